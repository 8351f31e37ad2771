import asyncio

from vigil_dispatch.main import main

asyncio.run(main())
