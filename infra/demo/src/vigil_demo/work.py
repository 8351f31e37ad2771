"""The simulated work behind ``GET /``: latency, the benign cache timeout, the order bug."""

import logging
import random
import time
from collections.abc import Callable

from vigil_demo.profiles import VersionProfile

_cache_log = logging.getLogger("demo.cache")
_orders_log = logging.getLogger("demo.orders")

NPE_STACK_TRACE = (
    'java.lang.NullPointerException: Cannot invoke "Order.getCustomer()" because "order" is null\n'
    "\tat com.example.orders.OrderService.price(OrderService.java:88)\n"
    "\tat com.example.orders.OrderService.checkout(OrderService.java:54)\n"
    "\tat com.example.orders.OrderController.post(OrderController.java:31)\n"
    "\tat com.example.http.Router.dispatch(Router.java:112)\n"
    "\tat java.base/java.lang.Thread.run(Thread.java:833)"
)
"""The stack trace the ``v2`` order bug logs, as the Java service it imitates would."""


class OrderProcessingError(Exception):
    """The ``v2`` bug: pricing an order whose lookup returned nothing."""

    def __init__(self, order_id: int) -> None:
        super().__init__(f"order {order_id} is null")
        self.order_id = order_id


def perform(
    profile: VersionProfile,
    rng: random.Random,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Does one request's work the way ``profile`` says and returns the HTTP status.

    Sleeps for the profile's latency, sometimes logs the benign cache timeout (status stays
    200) and sometimes hits the order bug, which logs an ERROR with a stack trace and gives 500.
    """
    sleep(profile.latency_ms(rng) / 1000)
    if rng.random() < profile.cache_timeout_rate:
        key = rng.randint(1000, 99999)
        _cache_log.error("Cache lookup timed out after 250 ms for key user:%d", key)
    try:
        _price_order(profile, rng)
    except OrderProcessingError as error:
        _orders_log.error(
            "Unhandled exception processing order %d\n%s", error.order_id, NPE_STACK_TRACE
        )
        return 500
    return 200


def _price_order(profile: VersionProfile, rng: random.Random) -> None:
    order_id = rng.randint(100000, 999999)
    if rng.random() < profile.order_failure_rate:
        raise OrderProcessingError(order_id)
