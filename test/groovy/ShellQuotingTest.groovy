import io.cicache.Cli
import io.cicache.EnvRef
import io.cicache.Shell
import org.junit.Test

import static org.junit.Assert.*

/** Shell.quote and the command scripts, checked by running them through the real /bin/sh. */
class ShellQuotingTest {
    static String roundTrip(List words) {
        File f = File.createTempFile('quote', '.sh')
        f.text = "#!/bin/sh\nfor a in ${Shell.join(words)}; do printf '%s\\037' \"\$a\"; done\n"
        f.setExecutable(true)
        Process p = new ProcessBuilder([f.path]).start()
        p.outputStream.close()
        String out = p.inputStream.text
        p.waitFor()
        f.delete()
        return out
    }

    @Test
    void everyWordReachesTheCommandUnchanged() {
        List<String> words = ['plain', 'with space', "it's", '"double"', '$HOME', '`id`', '$(id)', 'a\\b', 'semi;colon',
                              'pipe|amp&', 'glob*?[x]', '{{ hashFiles "requirements*.txt" }}', 'new\nline', '', '-', '--flag=v', 'tab\there', '~user', '#hash', 'é ü 中']
        Random rnd = new Random(42)
        String alphabet = "ab '\"\\\$`!*?[]{}();&|<>#~=%^\t\n"
        50.times {
            words.add((0..<rnd.nextInt(12)).collect { alphabet[rnd.nextInt(alphabet.length())] }.join())
        }
        assertEquals(words.collect { it + '\u001f' }.join(), roundTrip(words))
    }

    @Test
    void plainWordsStayReadable() {
        assertEquals('cicache --scope feature/x build --image 127.0.0.1:5000/app --build-arg A=1,2 .',
            Shell.join(['cicache', '--scope', 'feature/x', 'build', '--image', '127.0.0.1:5000/app', '--build-arg', 'A=1,2', '.']))
    }

    @Test
    void envRefsExpandOnTheAgentOnly() {
        assertEquals('login --username "$CICACHE_REGISTRY_USERNAME"', Shell.join(['login', '--username', new EnvRef('CICACHE_REGISTRY_USERNAME')]))
    }

    @Test
    void theExitCodeMarkerSurvivesOutputWithoutAFinalNewline() {
        File bin = File.createTempFile('fake', '.sh')
        bin.text = "#!/bin/sh\nprintf '{\"ok\": false, \"error\": \"boom\"}'\nexit 7\n"
        bin.setExecutable(true)
        File script = File.createTempFile('script', '.sh')
        script.text = Cli.shellScript(bin.path, ['save', '--key', 'k'], [:])
        script.setExecutable(true)
        Process p = new ProcessBuilder([script.path]).start()
        String out = p.inputStream.text
        assertEquals(0, p.waitFor())
        Map r = Cli.parse(out, true)
        assertEquals(7, r.exitCode)
        assertEquals([ok: false, error: 'boom'], r.result)
        assertEquals('save failed (exit code 7): boom', Cli.failure('save', r))
        bin.delete()
        script.delete()
    }

    @Test
    void parseToleratesLinesBeforeTheJsonDocumentAndReportsBrokenJson() {
        Map r = Cli.parse('WARNING! Your password will be stored unencrypted\n{"ok": true}\n\n__cicache_exit_code=0\n', true)
        assertEquals([ok: true], r.result)
        // Compact and pretty documents after other output that looks like JSON: the last document wins.
        r = Cli.parse('{"stream": "docker says"}\n{\n  "ok": true,\n  "steps": {\n    "cached": 1\n  }\n}\n__cicache_exit_code=0\n', true)
        assertEquals([ok: true, steps: [cached: 1]], r.result)
        r = Cli.parse('{"ok": tru\n__cicache_exit_code=1\n', true)
        assertNull(r.result)
        assertTrue(r.problem, r.problem.startsWith('the helper printed invalid JSON'))
        r = Cli.parse('partial output, then the agent went away', true)
        assertEquals(-1, r.exitCode)
        assertTrue(r.problem.contains('the shell ended before the helper returned'))
    }
}
