"""Unique names across API processes: registrations of the same usernames and emails raced over two API
processes (this test's web process and a `palaver run api` process) create exactly one account per name,
every loser gets 409, and a loser's other name is free again; `palaver admin create-user` goes through the
same registry; registration modes and the per-address limit answer 403 and 429.

Why this composition: chdb lets one process open a data dir, and the race is about the name registry,
which needs no ClickHouse. The second API process gets a chdb of its own (empty: it reads no users, which
only matters for its reads), both processes run a member of the one `names` consumer group on the same
topics, and the store writer of the first process stores every user of both, so its reads show the outcome.
Reads of other users' accounts are an admin's (made with `palaver admin create-user`); a rename or delete is
the user's own, signed in.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn

from api import queries
from palaver.demo.accounts import Participant, sign_in
from palaver.events.registry import USERS
from palaver.settings import Settings
from palaver.store import Store
from palaver.store.migrations import apply_migrations
from palaver.streams.clients import ensure_topics
from stack.web import create_app
from tests.integration.conftest import ServiceProcess, _wait_http, child_env, make_settings, poll
from tests.integration.infra import Infra, free_port
from tests.integration.test_users_chat import read_topic

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
LIMIT = 1000  # registrations per address per hour: this test registers many from 127.0.0.1


@dataclass
class TwoApis:
    settings: Settings
    store: Store
    urls: tuple[str, str]  # this process's (with the store writer), the `palaver run api` process's
    second: ServiceProcess


async def _serve(app: object, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    serving = asyncio.create_task(server.serve())
    await _wait_http(f"http://127.0.0.1:{port}")
    return server, serving


def _assigned_partitions(log: Path) -> bool:
    """The process's name registry owns at least one partition (its newest assignment is not empty)."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "name registry assigned" in line]
    return bool(lines) and not lines[-1].rstrip().endswith("[]")


@pytest.fixture(scope="module")
async def two_apis(infra: Infra, clickhouse_client: object,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TwoApis]:  # fmt: skip
    tag = uuid.uuid4().hex[:10]
    data_dir = tmp_path_factory.mktemp(f"names-{tag}")
    settings = make_settings(infra, data_dir, f"t{tag}", f"t_{tag}").model_copy(
        update={"registrations_per_address_per_hour": LIMIT}
    )
    store = Store(clickhouse_client, settings.clickhouse_database)
    apply_migrations(store)
    await ensure_topics(settings)
    server, serving = await _serve(create_app(settings, {"api", "store"}, store=store), settings.api_port)
    second_port = free_port()
    second = ServiceProcess(settings, "api", data_dir / "second-api.log", env={
        "PALAVER_API_PORT": str(second_port),
        "PALAVER_CLICKHOUSE_URL": f"chdb://{data_dir / 'second-clickhouse'}",
        "PALAVER_REGISTRATIONS_PER_ADDRESS_PER_HOUR": str(LIMIT),
    })  # fmt: skip
    second.start()
    try:
        second_url = f"http://127.0.0.1:{second_port}"
        await _wait_http(second_url, timeout_s=90)
        deadline = time.monotonic() + 60
        while not _assigned_partitions(second.log):  # both processes decide names now
            assert time.monotonic() < deadline, second.tail()
            await asyncio.sleep(0.2)
        yield TwoApis(settings, store, (f"http://127.0.0.1:{settings.api_port}", second_url), second)
    finally:
        second.stop()
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)


@pytest.fixture(scope="module")
async def admin(two_apis: TwoApis) -> Participant:
    """An admin (only an admin reads every user), made by `palaver admin create-user` and signed in to the
    first process once its store has the account."""
    made = await asyncio.to_thread(_admin, two_apis.settings, "--username", "registry-admin", "--email",
                                   "registry-admin@example.com", "--role", "admin")  # fmt: skip
    assert made.returncode == 0, made.stderr
    await poll(lambda: queries.users(two_apis.store, 1, 0, "registry-admin"), lambda rows: len(rows) == 1,
               "the admin in the store")  # fmt: skip
    return await sign_in(two_apis.urls[0], "registry-admin", PASSWORD)


def _bearer(who: Participant) -> dict[str, str]:
    return {"Authorization": f"Bearer {who.access_token}"}


async def _register(http: httpx.AsyncClient, url: str, username: str, email: str) -> httpx.Response:
    return await http.post(f"{url}/v1/users", json={"username": username, "email": email, "password": PASSWORD})


async def test_registrations_raced_over_two_api_processes_take_each_name_once(two_apis: TwoApis,
                                                                              admin: Participant) -> None:
    first, second = two_apis.urls
    attempts: list[tuple[str, str, str, str]] = []  # (raced name, url, username, email)
    spellings = ("racer{i}", "Racer{i}", "RACER{i}")
    for i in range(6):  # six usernames, six attempts each (three per process, in three spellings)
        for j in range(6):
            url = (first, second)[j % 2]
            attempts.append((f"username:racer{i}", url, spellings[j % 3].format(i=i), f"racer{i}.{j}@example.com"))
    for k in range(4):  # four emails, four attempts each
        for j in range(4):
            url = (first, second)[j % 2]
            email = f"Shared{k}@Example.com" if j % 2 else f"shared{k}@example.com"
            attempts.append((f"email:shared{k}@example.com", url, f"mailer{k}x{j}", email))

    async with httpx.AsyncClient(timeout=180) as http:
        answers = await asyncio.gather(*(_register(http, url, user, mail) for _, url, user, mail in attempts))
        by_name: dict[str, list[tuple[httpx.Response, tuple[str, str, str, str]]]] = defaultdict(list)
        for attempt, answer in zip(attempts, answers, strict=True):
            by_name[attempt[0]].append((answer, attempt))
        winners = {}
        for name, results in by_name.items():
            codes = Counter(answer.status_code for answer, _ in results)
            assert codes == {201: 1, 409: len(results) - 1}, (name, [(a.status_code, a.text) for a, _ in results])
            kind = name.partition(":")[0]
            for answer, _ in results:
                if answer.status_code == 409:
                    assert answer.json()["detail"] == f"{kind} already taken"
            winners[name] = next(answer.json() for answer, _ in results if answer.status_code == 201)

        # The log (the system of record) holds exactly one live user per name, the winner.
        newest: dict[str, dict[str, object]] = {}
        for raw in await read_topic(two_apis.settings, USERS.name):
            event = orjson.loads(raw)
            if event["user_id"] not in newest or event["user_version"] >= newest[event["user_id"]]["user_version"]:
                newest[event["user_id"]] = event
        live = [u for u in newest.values() if not u["deleted"] and u["user_id"] != admin.user_id]
        assert len(live) == len(by_name)
        for field in ("username", "email"):
            held = Counter(str(u[field]).lower() for u in live)
            assert max(held.values()) == 1, held
        assert {u["user_id"] for u in live} == {w["user_id"] for w in winners.values()}

        # The store (fed from both processes) agrees, and each loser's other name was released.
        for i in range(6):
            await poll(lambda i=i: http.get(f"{first}/v1/users", params={"username": f"racer{i}"},
                                            headers=_bearer(admin)),
                       lambda r: len(r.json()["users"]) == 1, f"racer{i} in the store")  # fmt: skip
        loser = next(a for answer, a in by_name["username:racer0"] if answer.status_code == 409)
        again = await _register(http, second, "late-racer0", loser[3])
        assert again.status_code == 201, again.text
        taken = await _register(http, first, "late-racer1", str(winners["username:racer1"]["email"]).upper())
        assert (taken.status_code, taken.json()["detail"]) == (409, "email already taken")


async def test_rename_and_delete_move_names_between_processes(two_apis: TwoApis) -> None:
    first, second = two_apis.urls
    async with httpx.AsyncClient(timeout=60) as http:
        ana = await _register(http, first, "ana-r", "ana-r@example.com")
        bob = await _register(http, second, "bob-r", "bob-r@example.com")
        assert ana.status_code == bob.status_code == 201, (ana.text, bob.text)
        ana_id = ana.json()["user_id"]
        as_ana = _bearer(await sign_in(first, "ana-r", PASSWORD))  # one renames and deletes one's own account
        # A rename in the process that created the user; the old name is free at once on the other one.
        taken = await http.patch(f"{first}/v1/users/{ana_id}", json={"username": "BOB-R"}, headers=as_ana)
        assert (taken.status_code, taken.json()["detail"]) == (409, "username already taken")
        renamed = await http.patch(f"{first}/v1/users/{ana_id}", json={"username": "anna-r"}, headers=as_ana)
        assert renamed.status_code == 200 and renamed.json()["username"] == "anna-r", renamed.text
        same = await http.patch(f"{first}/v1/users/{ana_id}", json={"username": "Anna-R"},
                                headers=as_ana)  # only the case changes
        assert same.status_code == 200, same.text
        reuse = await _register(http, second, "ana-r", "someone@example.com")
        assert reuse.status_code == 201, reuse.text
        assert (await _register(http, second, "anna-r", "x1@example.com")).status_code == 409
        # A delete frees both names.
        assert (await http.delete(f"{first}/v1/users/{ana_id}", headers=as_ana)).status_code == 204
        again = await _register(http, second, "anna-r", "ana-r@example.com")
        assert again.status_code == 201, again.text


def _admin(settings: Settings, *args: str, password: str | None = PASSWORD, env: dict[str, str] | None = None,
           stdin: int | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    argv = [sys.executable, "-m", "stack", "admin", "create-user", *args]
    if password is not None:
        argv.append("--password-stdin")
        feed: dict[str, object] = {"input": f"{password}\n"}
    else:
        feed = {"stdin": stdin}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120,  # type: ignore[call-overload]
                          env={**child_env(settings), **(env or {})}, **feed)  # fmt: skip


async def test_admin_create_user_takes_names_through_the_registry(two_apis: TwoApis,
                                                                   admin: Participant) -> None:  # fmt: skip
    first, second = two_apis.urls
    settings = two_apis.settings
    made = await asyncio.to_thread(_admin, settings, "--username", "Root", "--email", "root@example.com", "--role", "admin")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("created admin Root (usr_"), made.stdout
    user_id = made.stdout.strip().rsplit("(", 1)[1].rstrip(")")
    assert PASSWORD not in made.stdout + made.stderr

    dup = await asyncio.to_thread(_admin, settings, "--username", "ROOT", "--email", "other-root@example.com")
    assert (dup.returncode, dup.stderr.strip()) == (1, "palaver: username already taken")
    async with httpx.AsyncClient(timeout=60) as http:
        refused = await _register(http, second, "root", "root2@example.com")
        assert (refused.status_code, refused.json()["detail"]) == (409, "username already taken")
        stored = await poll(lambda: http.get(f"{first}/v1/users/{user_id}", headers=_bearer(admin)),
                            lambda r: r.status_code == 200, "the admin in the store")  # fmt: skip
        assert (stored.json()["username"], stored.json()["role"]) == ("Root", "admin")
        # The email the refused run claimed was released: a registration may take it.
        assert (await _register(http, first, "not-root", "other-root@example.com")).status_code == 201

    short = await asyncio.to_thread(_admin, settings, "--username", "shorty", "--email", "s@example.com", password="s3cret")
    assert short.returncode == 2 and "password" in short.stderr and "s3cret" not in short.stderr, short.stderr
    no_tty = await asyncio.to_thread(_admin, settings, "--username", "tty", "--email", "t@example.com", password=None,
                                     stdin=subprocess.DEVNULL)  # fmt: skip
    assert (no_tty.returncode, no_tty.stderr.strip()) == (
        2, "palaver: no terminal to ask the password on: pipe it in with --password-stdin")  # fmt: skip
    down = await asyncio.to_thread(_admin, settings, "--username", "nobroker", "--email", "nb@example.com",
                                   env={"PALAVER_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})  # fmt: skip
    assert down.returncode == 2 and down.stderr.startswith("palaver: Kafka at 127.0.0.1:"), down.stderr
    assert "Traceback" not in down.stderr


@pytest.fixture(scope="module")
async def guarded_api(infra: Infra, clickhouse_client: object,
                      tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Settings, str]]:  # fmt: skip
    """One API process with invite-only registration and a limit of three registrations per address."""
    tag = uuid.uuid4().hex[:10]
    settings = make_settings(infra, tmp_path_factory.mktemp(f"invite-{tag}"), f"t{tag}", f"t_{tag}").model_copy(
        update={"registration": "invite", "registrations_per_address_per_hour": 3}
    )
    store = Store(clickhouse_client, settings.clickhouse_database)
    apply_migrations(store)
    await ensure_topics(settings)
    server, serving = await _serve(create_app(settings, {"api"}, store=store), settings.api_port)
    try:
        yield settings, f"http://127.0.0.1:{settings.api_port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)


async def test_invite_only_registration_and_the_per_address_limit(guarded_api: tuple[Settings, str]) -> None:
    settings, url = guarded_api
    made = subprocess.run([sys.executable, "-m", "stack", "admin", "invite", "--ttl-hours", "1"], capture_output=True,
                          text=True, timeout=60, env=child_env(settings), check=True)  # fmt: skip
    invite = made.stdout.strip()
    body = {"username": "invited", "email": "invited@example.com", "password": PASSWORD}
    async with httpx.AsyncClient(timeout=60) as http:
        missing = await http.post(f"{url}/v1/users", json=body)
        assert missing.status_code == 403 and "invite" in missing.json()["detail"], missing.text
        forged = await http.post(f"{url}/v1/users", json={**body, "invite": invite[:-4] + "AAAA"})
        assert forged.status_code == 403 and forged.json()["detail"].startswith("invite: "), forged.text
        for n in range(3):
            ok = await http.post(f"{url}/v1/users", json={**body, "username": f"invited{n}",
                                                             "email": f"i{n}@example.com", "invite": invite})  # fmt: skip
            assert ok.status_code == 201 and ok.json()["role"] == "member", ok.text
        over = await http.post(f"{url}/v1/users", json={**body, "invite": invite})
        assert over.status_code == 429, over.text
        assert 1 <= int(over.headers["Retry-After"]) <= 3600
        assert invite not in over.text


async def test_the_registry_learns_the_names_of_users_from_before_it(
    infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A deployment whose users topic already holds users (made before the registry existed): on its first
    start the registry takes their names before it decides anything, so they cannot be registered again;
    a deleted user's names are free."""
    from api.user_state import new_user
    from palaver.events import encode
    from palaver.streams.clients import make_producer

    tag = uuid.uuid4().hex[:10]
    settings = make_settings(infra, tmp_path_factory.mktemp(f"seed-{tag}"), f"t{tag}", f"t_{tag}")
    store = Store(clickhouse_client, settings.clickhouse_database)
    apply_migrations(store)
    await ensure_topics(settings)
    old = new_user("usr_" + "1" * 24, "Old-Timer", "old@example.com", "scrypt$x", "member", "", 1_000)
    gone = new_user("usr_" + "2" * 24, "gone", "gone@example.com", "scrypt$x", "member", "", 1_000)
    producer = make_producer(settings)
    await producer.start()
    try:
        users = f"t{tag}.{USERS.name}"
        for record, change in ((old, "created"), (gone, "created"), (gone.changed(2_000, deleted=True), "deleted")):
            await producer.send_and_wait(users, encode(record.event(change)), key=record.user_id.encode())  # type: ignore[arg-type]
    finally:
        await producer.stop()
    server, serving = await _serve(create_app(settings, {"api"}, store=store), settings.api_port)
    url = f"http://127.0.0.1:{settings.api_port}"
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            name = await _register(http, url, "old-timer", "new@example.com")
            assert (name.status_code, name.json()["detail"]) == (409, "username already taken"), name.text
            mail = await _register(http, url, "newcomer", "OLD@example.com")
            assert (mail.status_code, mail.json()["detail"]) == (409, "email already taken"), mail.text
            free = await _register(http, url, "gone", "gone@example.com")
            assert free.status_code == 201, free.text
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)
