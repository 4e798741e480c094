import sys

from lenslab.cli import main

sys.exit(main())
