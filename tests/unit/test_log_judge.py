"""Log templates (the display/exception helpers of templates.py): literal records in."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil_log_analyzer.domain import (
    has_exception,
    template_id,
    template_of,
)

CACHE_TIMEOUT = "Cache lookup timed out after 250 ms for key user:{key}"
NPE_TRACE = (
    "Unhandled exception processing order 418207\n"
    "\tjava.lang.NullPointerException: "
    'Cannot invoke "Order.getCustomer()" because "order" is null\n'
    "\tat com.example.orders.OrderService.price(OrderService.java:88)\n"
    "\tat com.example.orders.OrderService.checkout(OrderService.java:54)\n"
    "\tat java.base/java.lang.Thread.run(Thread.java:833)"
)


@pytest.mark.parametrize(
    ("message", "template"),
    [
        (
            "GET / 200 in 23 ms request_id=6f1c0a4e-3b7d-4f51-9a5e-2b8c9d0e1f23",
            "GET / <NUM> in <DURATION> request_id=<*>",
        ),
        ("Lookup of 6f1c0a4e-3b7d-4f51-9a5e-2b8c9d0e1f23 failed", "Lookup of <UUID> failed"),
        ("Connected to 10.0.0.12:5432", "Connected to <IP>"),
        ("Retrying in 1.5s after 3 attempts", "Retrying in <DURATION> after <NUM> attempts"),
        (
            "Cache lookup timed out after 250 ms for key user:98121",
            "Cache lookup timed out after <DURATION> for key user:<NUM>",
        ),
        ("Could not read /var/lib/app/orders/123.json", "Could not read <PATH>"),
        ("Welcome mail to jane.doe@example.com bounced", "Welcome mail to <EMAIL> bounced"),
        ("Fetched https://api.example.com/v1/x?id=3 in 12ms", "Fetched <URL> in <DURATION>"),
        ("Segfault at 0x7ffe3a2b, build 9f8e7d6c5b", "Segfault at <HEX>, build <HEX>"),
        ("Unknown customer \"Jane Doe\" in 'eu-west-1'", "Unknown customer <STR> in <STR>"),
        ("user=alice retries=3 mode=fast", "user=<*> retries=<*> mode=<*>"),
        ("Job started at 2026-11-22T02:37:07.123Z", "Job started at <TIME>"),
        ("  lots   of\t spaces  ", "lots of spaces"),
        ("can't decide", "can't decide"),
    ],
)
def test_template_abstracts_variable_parts(message, template):
    assert template_of(message) == template


def test_java_stack_trace_keeps_message_exception_class_and_first_frame():
    assert template_of(NPE_TRACE) == (
        "Unhandled exception processing order <NUM> | java.lang.NullPointerException"
        " | at com.example.orders.OrderService.price(OrderService.java)"
    )


def test_stack_trace_line_numbers_do_not_change_the_template():
    moved = NPE_TRACE.replace("OrderService.java:88", "OrderService.java:91")

    assert template_of(moved) == template_of(NPE_TRACE)


def test_python_traceback_keeps_exception_class_and_innermost_frame():
    message = (
        "Request failed\n"
        "Traceback (most recent call last):\n"
        '  File "/srv/app/handlers.py", line 10, in handle\n'
        "    price(order)\n"
        '  File "/srv/app/orders.py", line 88, in price\n'
        "    return order.total\n"
        "AttributeError: 'NoneType' object has no attribute 'total'"
    )

    assert template_of(message) == "Request failed | AttributeError | at orders.py in price"
    assert has_exception(message)


def test_plain_lines_carry_no_exception():
    assert not has_exception("Cache lookup timed out after 250 ms for key user:1")
    assert not has_exception("Error: disk almost full")
    assert has_exception(NPE_TRACE)


def test_template_ids_are_stable():
    template = "Cache lookup timed out after <DURATION> for key user:<NUM>"

    # The id is part of stored results: it must not change across runs or releases.
    assert template_id(template) == "b3103aa6a0a3"
    assert template_id(template_of(CACHE_TIMEOUT.format(key=1))) == "b3103aa6a0a3"
    assert len(template_id("")) == 12


@given(st.text())
def test_template_of_is_idempotent(message):
    template = template_of(message)

    assert template_of(template) == template


@given(
    st.sampled_from(["order {} failed", "took {} ms", "retry {} of 5", "key user:{}", "id={}"]),
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=0, max_value=10**12),
)
def test_numbers_never_affect_the_template_id(pattern, first, second):
    assert template_id(template_of(pattern.format(first))) == template_id(
        template_of(pattern.format(second))
    )
