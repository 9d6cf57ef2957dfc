import sys

from secretary.cli import main

sys.exit(main())
