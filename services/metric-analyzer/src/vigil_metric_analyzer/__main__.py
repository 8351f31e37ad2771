import asyncio

from vigil_metric_analyzer.main import main

asyncio.run(main())
