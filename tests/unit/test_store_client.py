"""The store's client pool: each call has a client to itself; a call waits while every client is lent."""

from __future__ import annotations

import threading

import pytest

from palaver.store.client import ClientPool, connect_pool


class _Client:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_concurrent_calls_get_distinct_clients() -> None:
    clients = [_Client(), _Client()]
    pool = ClientPool(clients)
    with pool.lend() as first, pool.lend() as second:
        assert {id(first), id(second)} == {id(c) for c in clients}


def test_a_call_waits_for_a_free_client_and_gets_it_back() -> None:
    client = _Client()
    pool = ClientPool([client])
    lent: list[object] = []
    got = threading.Event()

    def borrow() -> None:
        with pool.lend() as c:
            lent.append(c)
            got.set()

    with pool.lend():
        waiter = threading.Thread(target=borrow)
        waiter.start()
        assert not got.wait(0.2), "the only client is lent: the second call waits"
    waiter.join(10)
    assert lent == [client]


def test_a_failed_call_gives_its_client_back() -> None:
    pool = ClientPool([_Client()])
    with pytest.raises(RuntimeError), pool.lend():
        raise RuntimeError("query failed")
    with pool.lend() as again:
        assert isinstance(again, _Client)


def test_close_closes_every_client() -> None:
    clients = [_Client(), _Client()]
    ClientPool(clients).close()
    assert all(c.closed for c in clients)


def test_a_pool_has_at_least_one_client() -> None:
    with pytest.raises(ValueError):
        ClientPool([])
    with pytest.raises(ValueError):
        connect_pool("chdb://unused", 0)
