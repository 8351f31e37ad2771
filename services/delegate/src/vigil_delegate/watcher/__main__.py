import sys

from vigil_delegate.watcher.main import main

sys.exit(main())
