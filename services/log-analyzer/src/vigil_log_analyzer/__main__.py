import asyncio

from vigil_log_analyzer.main import main

asyncio.run(main())
