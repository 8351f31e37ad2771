import asyncio

from vigil_orchestrator.main import main

asyncio.run(main())
