"""The benchmark app: imports a few of the installed packages."""

import numpy
import pandas

print("numpy", numpy.__version__, "pandas", pandas.__version__)
