"""``palaver admin``: accounts made by an operator on the command line.

``create-user`` makes an account of any role (the first admin comes from here) through the same name
registry as the API, so it cannot take a name that a registration takes at the same moment: it is a
client of Kafka, as an API process is (claim the names, wait for the decisions, publish ``user.changed``).
The registry runs inside the API processes, so one must be running. ``invite`` prints an invite code for
``PALAVER_REGISTRATION=invite``. ``purge-meeting`` erases a meeting (``palaver.erasure``) with its own
producer and store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from api.name_claims import NameClaims
from api.names import kind_of, user_names
from api.passwords import hash_password
from api.registration import make_invite
from api.user_state import UserRecord, new_user
from api.users import UserCreate
from palaver import ids
from palaver.auth.secret import load_secret
from palaver.erasure import NoSuchMeeting, PurgeReport, purge_meeting
from palaver.events import encode
from palaver.events.registry import MEETINGS, MERGER_STATE, NAME_CLAIMS, NAME_DECISIONS, USERS, topic_name
from palaver.settings import Settings
from palaver.store.client import StoreUnavailable, open_store
from palaver.streams.clients import ensure_topics, make_producer, wait_for_broker

NAME_TAKEN_EXIT = 1
NOT_CONFIRMED_EXIT = 1  # purge-meeting: the confirmation was not the meeting's id
CANNOT_EXIT = 2  # bad input, no broker, no store, no registry answering
NO_SUCH_MEETING_EXIT = 3
OPERATOR = "admin"  # the actor of a purge made on the command line
BROKER_TIMEOUT_S = 10.0


class AdminError(Exception):
    """A refusal or failure to tell the operator (``palaver: <message>``), with the exit status."""

    def __init__(self, message: str, exit_code: int = CANNOT_EXIT):
        super().__init__(message)
        self.exit_code = exit_code


def check_new_user(username: str, email: str, password: str) -> None:
    """The API's rules for a new account (``api.users.UserCreate``); raises AdminError saying what is wrong,
    never echoing the password."""
    try:
        UserCreate.model_validate({"username": username, "email": email, "password": password})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))
        raise AdminError(f"invalid user: {problems}") from None
    if not 8 <= len(password) <= 1024:
        raise AdminError("invalid user: password: 8-1024 characters")


async def create_user(settings: Settings, username: str, email: str, password: str, role: str) -> UserRecord:
    """Create a user of ``role`` once the name registry granted its username and email. Raises AdminError:
    a name taken (exit 1), or no broker or no registry answering within ``name_claim_timeout_s`` (exit 2)."""
    check_new_user(username, email, password)
    try:
        await wait_for_broker(settings, timeout_s=BROKER_TIMEOUT_S)
    except TimeoutError as exc:
        raise AdminError(str(exc)) from None
    await ensure_topics(settings, [USERS, NAME_CLAIMS, NAME_DECISIONS])
    producer = make_producer(settings)
    await producer.start()
    claims = NameClaims(settings, producer, service="palaver admin")
    stop = asyncio.Event()
    reader = asyncio.create_task(claims.run(stop))
    try:
        user_id = ids.user_id(uuid.uuid4().hex)
        password_hash = await asyncio.to_thread(hash_password, password)
        names = list(user_names(username, email).values())
        timeout_s = settings.name_claim_timeout_s
        outcome = await claims.claim(names, user_id, timeout_s)
        if not outcome.all_granted:
            with contextlib.suppress(KafkaError):
                await claims.release(outcome.granted + outcome.unanswered, user_id)
            if outcome.refused:
                taken = " and ".join(sorted({kind_of(n) for n in outcome.refused}, key=("username", "email").index))
                raise AdminError(f"{taken} already taken", NAME_TAKEN_EXIT)
            raise AdminError(f"the name registry did not answer within {timeout_s:g} s: it runs in the API "
                             "processes; is Palaver up (`palaver up`, or `palaver run api ...`)?")  # fmt: skip
        record = new_user(user_id, username, email, password_hash, role, "", int(time.time() * 1000))
        users = topic_name(settings.topic_namespace, USERS.name)
        await producer.send_and_wait(users, encode(record.event("created")), key=user_id.encode())
        return record
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader, 10)
        await producer.stop()


def invite(settings: Settings, ttl_hours: float) -> str:
    """A new invite code signed with the deployment's secret (``PALAVER_SECRET_KEY`` or the data dir's)."""
    if ttl_hours <= 0:
        raise AdminError("--ttl-hours must be more than 0")
    return make_invite(load_secret(settings), now_ms=int(time.time() * 1000), ttl_hours=ttl_hours)


def check_meeting_id(meeting_id: str) -> None:
    """Raises AdminError unless ``meeting_id`` could be a meeting's id."""
    if not ids.is_valid_id_part(meeting_id):
        raise AdminError(f"{meeting_id!r} is not a meeting id (1-64 of [A-Za-z0-9._-])")


async def purge(settings: Settings, meeting_id: str) -> PurgeReport:
    """Erase ``meeting_id`` with a producer and store of its own. The store opens first, so a store that
    cannot be opened (with chdb: a running Palaver holds its data directory) publishes nothing. Raises
    AdminError: no such meeting (exit 3), no broker or no store (exit 2)."""
    check_meeting_id(meeting_id)
    try:
        store = open_store(settings)
    except StoreUnavailable as exc:
        raise AdminError(f"{exc}; with the embedded ClickHouse, stop Palaver first, or use "
                         "DELETE /v1/meetings/{meeting_id} as the owner or an admin") from None  # fmt: skip
    try:
        try:
            await wait_for_broker(settings, timeout_s=BROKER_TIMEOUT_S)
        except TimeoutError as exc:
            raise AdminError(str(exc)) from None
        await ensure_topics(settings, [MEETINGS, MERGER_STATE])
        producer = make_producer(settings)
        await producer.start()
        try:
            return await purge_meeting(settings, producer, store, meeting_id, OPERATOR, int(time.time() * 1000))
        except NoSuchMeeting:
            raise AdminError(f"no meeting {meeting_id}: nothing was deleted", NO_SUCH_MEETING_EXIT) from None
        except StoreUnavailable as exc:
            raise AdminError(f"{exc}; the purge stopped halfway: run it again to finish it") from None
        finally:
            await producer.stop()
    finally:
        store.close()
