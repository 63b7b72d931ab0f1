import sys

from localnet.cli import main

sys.exit(main())
