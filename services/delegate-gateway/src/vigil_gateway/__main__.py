import asyncio

from vigil_gateway.main import main

asyncio.run(main())
