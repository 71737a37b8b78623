import sys

from kimberly.runtime.cli import main

sys.exit(main(sys.argv[1:]))
