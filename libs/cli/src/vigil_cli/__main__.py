import sys

from vigil_cli.main import main

sys.exit(main())
