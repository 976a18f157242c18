"""The example app: prints the versions of what pip installed."""

from importlib.metadata import version


def main() -> None:
    for dist in ("six", "idna", "attrs", "packaging"):
        print(f"{dist} {version(dist)}")


if __name__ == "__main__":
    main()
