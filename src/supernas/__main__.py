import sys

from supernas.cli import main

sys.exit(main())
