import asyncio

from vigil_delegate.main import main

asyncio.run(main())
