"""No secret in the repository, the logs or the job specs.

Services: the real `hrwsi` processes, started as ops start them, at HRWSI_LOG_LEVEL=DEBUG, with the
secrets hrwsi takes in their environment: a database URL with a password, NOMAD_TOKEN, the alert
SMTP password and a webhook URL with credentials. They run a task that succeeds and one that fails
(its alert is sent), and they hit the failure paths that print URLs and errors: a database that is
missing or unreachable at start-up, a listener that cannot log in again, a webhook that refuses
and a webhook URL with a typo. Then no secret may appear in anything they printed, in any file
under HRWSI_HOME (job logs, products), in any row of schema hrwsi, or in what Nomad holds (job
specs, allocations, task logs). Each routine prints its whole environment into its job log, so a
secret handed to a job shows up there. Each test also checks that the secrets were really used
(the webhook and the SMTP server saw the credentials, Nomad refuses requests without the token,
the failure paths printed the redacted URL), so a test cannot pass without looking.

Repository: the files git would commit hold no private key, no URL with an inline password and
no literal value assigned to a *_PASSWORD / *_TOKEN / *_SECRET name; nomad-jobs/*.hcl take
secrets from Nomad Variables only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from aiohttp import web
from psycopg import sql

from hrwsi.configuration import load
from hrwsi.database import with_database
from tests.integration.conftest import insert_inputs, single_routine_configuration, wait_until

HRWSI = [sys.executable, "-m", "hrwsi"]
ROOT = Path(__file__).resolve().parents[2]

# A routine that prints its whole environment (stdout; stderr too when it fails): whatever secret a
# job is handed lands in its log. An input path containing "fail" makes it exit 3.
ROUTINE = [sys.executable, "-c", """
import json, os, pathlib, sys
environment = json.dumps(dict(os.environ), sort_keys=True)
print("routine environment:", environment, flush=True)
if "fail" in os.environ["HRWSI_INPUT_PATH"]:
    print("failing on purpose; environment:", environment, file=sys.stderr, flush=True)
    sys.exit(3)
pathlib.Path(os.environ["HRWSI_OUTPUT_DIR"], "product.txt").write_text("ok")
"""]


def distinctive(kind: str) -> str:
    """A secret value found nowhere else (hex only, so it reads the same percent-encoded)."""
    return f"hrwsi{kind}{uuid.uuid4().hex}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- running the services ------------------------------------------------------------------------
class Process:
    """One `hrwsi ...` subprocess; stdout and stderr go to files (nothing to drain, nothing to lose)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], directory: Path):
        self.name = name
        self.out, self.err = directory / f"{name}.stdout", directory / f"{name}.stderr"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen([*HRWSI, *args], env=env, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL)

    def output(self) -> str:
        return (self.out.read_text(errors="replace") + "\n" + self.err.read_text(errors="replace"))

    async def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Poll the output until it shows `text`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while text not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.process.returncode} before printing {text!r}:\n"
                                     f"{self.output()[-3000:]}")
            if loop.time() > deadline:
                raise AssertionError(f"{self.name} did not print {text!r} within {timeout} s:\n"
                                     f"{self.output()[-3000:]}")
            await asyncio.sleep(0.05)

    async def stop(self) -> int:
        """SIGTERM, as Nomad or systemd stop a service; waits off the event loop (an emulator may run on it)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.process.wait, 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
            raise AssertionError(f"{self.name} did not stop within 30 s of SIGTERM:\n{self.output()[-3000:]}") from None


@pytest.fixture
def processes(tmp_path):
    """Start `hrwsi` subprocesses; whatever still runs at the end of the test is killed."""
    started: list[Process] = []
    directory = tmp_path / "output"
    directory.mkdir()

    def start(name: str, args: list[str], env: dict[str, str]) -> Process:
        process = Process(name, args, env, directory)
        started.append(process)
        return process

    start.started = started
    yield start
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait()


@pytest.fixture
def service_login(db, database_url):
    """A login role with a distinctive password, granted hrwsi_service (no superuser), and a URL carrying both.

    The test server may trust local connections: the password is then not checked, but it is in the URL
    the services are given, which is what must never be printed or stored.
    """
    role = f"hrwsi_secrets_{uuid.uuid4().hex[:8]}"
    password = distinctive("dbpassword")
    db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE hrwsi_service").format(
        sql.Identifier(role), sql.Literal(password)))
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    url = urlunsplit((parts.scheme, f"{role}:{password}@{host}", parts.path, parts.query, parts.fragment))
    yield role, password, url
    db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def service_env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    """The environment of a service: this one's, without any HRWSI_* or NOMAD_* setting of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HRWSI_", "NOMAD_"))}
    env.update({"HRWSI_HOME": str(tmp_path / "home"), "HRWSI_DATABASE_URL": url, "HRWSI_LOG_LEVEL": "DEBUG",
                "HRWSI_BACKEND": "local", "HRWSI_WEB_PORT": "0", "HRWSI_BACKSTOP_POLL_S": "0.5", "HRWSI_HEARTBEAT_S": "0.5",
                "HRWSI_LEASE_TIMEOUT_S": "3", "HRWSI_RETRY_BACKOFF_S": "0.05", "HRWSI_SHUTDOWN_GRACE_S": "5",
                "COLUMNS": "200"})
    env.update(extra)
    return env


# -- where a secret could end up -----------------------------------------------------------------
def files_under(root: Path) -> dict[str, str]:
    return {f"file {path}": path.read_bytes().decode("utf-8", errors="replace")
            for path in sorted(root.rglob("*")) if path.is_file()}


def database_rows(db) -> dict[str, str]:
    """Every row of every table in schema hrwsi (and the migration table), as JSON text."""
    tables = db.execute("""SELECT table_schema, table_name FROM information_schema.tables
                           WHERE table_schema = 'hrwsi'
                              OR (table_schema = 'public' AND table_name LIKE 'hrwsi%')
                           ORDER BY 1, 2""").fetchall()
    assert ("hrwsi", "task_event") in tables and ("hrwsi", "job") in tables and ("hrwsi", "alert") in tables
    return {f"table {schema}.{table}": "\n".join(row[0] for row in db.execute(
                sql.SQL("SELECT row_to_json(t)::text FROM {}.{} t").format(sql.Identifier(schema),
                                                                          sql.Identifier(table))))
            for schema, table in tables}


def outputs(processes) -> dict[str, str]:
    return {f"output of hrwsi {p.name}": p.output() for p in processes.started}


def assert_no_secret(secrets: dict[str, list[str]], places: dict[str, str]) -> None:
    """No form of any secret (the value itself, or its base64 as it travels in an auth header) in any place."""
    leaks = []
    for where, text in places.items():
        for name, forms in secrets.items():
            for form in forms:
                if form in text:
                    at = text.index(form)
                    leaks.append(f"{name} in {where}: ...{text[max(0, at - 150):at + len(form) + 50]!r}...")
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)


def job_logs(home: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (home / "data").rglob("*.log"))


# -- 1. the database password ----------------------------------------------------------------------
async def test_the_database_password_stays_out_of_logs_and_tables(db, database_url, service_login, processes,
                                                                  tmp_path, unused_tcp_port):
    role, password, url = service_login
    load(db, single_routine_configuration(ROUTINE, max_attempts=1))
    env = service_env(tmp_path, url)
    # Started while their database is missing or unreachable: they say what they wait for, with the URL.
    missing = processes("launcher-missing-database", ["launcher"],
                        {**env, "HRWSI_DATABASE_URL": with_database(url, f"hrwsi_missing_{uuid.uuid4().hex[:8]}")})
    unreachable = processes("orchestrator-unreachable-server", ["orchestrator"],
                            {**env, "HRWSI_DATABASE_URL": f"postgresql://{role}:{password}@127.0.0.1:"
                                                          f"{unused_tcp_port}/hrwsi"})
    # The three services, each in its own process as on Nomad (nomad-jobs/).
    services = [processes(kind, [kind], env) for kind in ("harvester", "orchestrator", "launcher")]
    # All three are up (registered) before anything is cut: on a busy machine one may start late.
    await wait_until(database_url, """SELECT count(DISTINCT kind) = 3 FROM hrwsi.service_instance
                                      WHERE kind IN ('harvester', 'orchestrator', 'launcher')""", timeout=120)
    insert_inputs(db, 2, prefix="/in/ok-")
    insert_inputs(db, 1, prefix="/in/fail-")
    await wait_until(database_url, """SELECT count(*) FILTER (WHERE state = 'processed') = 2
                                             AND count(*) FILTER (WHERE state = 'terminated') = 1
                                      FROM hrwsi.processing_task""")

    # The listeners lose their connections and cannot log in again for a while: they print the URL they retry.
    db.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))
    db.execute("""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE usename = %s AND application_name LIKE 'hrwsi-%%-listener'""", (role,))
    for service in services:
        await service.wait_for("listener: cannot connect to")
    db.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(role)))
    insert_inputs(db, 1, prefix="/in/ok-after-", start=0)
    await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task WHERE state = 'processed'")

    for waiting in (missing, unreachable):
        await waiting.wait_for("waits")
        await waiting.stop()
    for service in services:
        assert await service.stop() == 0, service.output()[-3000:]
    assert processes("status", ["status"], env).process.wait(60) == 0

    home = tmp_path / "home"
    assert_no_secret({"the database password": [password]},
                     {**outputs(processes), **files_under(home), **database_rows(db)})
    # ... where a leak would have been: each failure path printed the URL (redacted), each routine its environment.
    # (a server that runs without the URL's database is said so, with the URL: "the database server of user=...")
    for process in (missing, unreachable, *services):
        assert re.search(rf"(cannot connect to|the database server of) user={re.escape(role)} ", process.output()), \
            f"{process.name} never printed its URL"
    assert "routine environment:" in job_logs(home)


# -- 2. the Nomad token ------------------------------------------------------------------------------
async def test_the_nomad_token_stays_out_of_logs_job_specs_and_task_environments(db, database_url, service_login,
                                                                                 processes, tmp_path):
    from hrwsi.testing.nomad_emulator import EmulatedNode, NomadEmulator

    _, password, url = service_login
    token = distinctive("nomadtoken")
    load(db, single_routine_configuration(ROUTINE, max_attempts=1))
    # The Nomad API emulator (the one test double this suite allows), with ACLs on: every call needs the token.
    # Its nodes are the configuration's workers (w01, w02: 4 cores, 16000 MB), pinned by name.
    nodes = [EmulatedNode(name, cpu_mhz=4000, memory_mb=16000, disk_mb=50_000) for name in ("w01", "w02")]
    async with NomadEmulator(nodes, acl_token=token, work_dir=tmp_path / "nomad", event_heartbeat=0.5) as nomad:
        env = service_env(tmp_path, url, HRWSI_BACKEND="nomad", NOMAD_ADDR=nomad.address, NOMAD_TOKEN=token,
                          HRWSI_NOMAD_MHZ_PER_CORE="1000", HRWSI_NOMAD_PURGE="false")
        # Nomad fails the first registrations (a transient 500): the backend logs what failed and retries.
        nomad.inject_errors(2, 500, path_prefix="/v1/jobs", method="POST")
        up = processes("up", ["up"], env)
        insert_inputs(db, 1, prefix="/in/ok-")
        insert_inputs(db, 1, prefix="/in/fail-")
        await wait_until(database_url, """SELECT count(*) FILTER (WHERE state = 'processed') = 1
                                                 AND count(*) FILTER (WHERE state = 'terminated') = 1
                                          FROM hrwsi.processing_task""")
        assert await up.stop() == 0, up.output()[-3000:]

        # What Nomad holds, read through its API (HRWSI_NOMAD_PURGE=false kept the jobs).
        held: dict[str, str] = {}
        async with aiohttp.ClientSession(nomad.address) as anonymous:
            async with anonymous.get("/v1/jobs") as response:
                assert response.status == 403, "the emulator's ACL is on: the token was needed"
        async with aiohttp.ClientSession(nomad.address, headers={"X-Nomad-Token": token}) as client:
            async def get(path: str, **params) -> str:
                async with client.get(path, params=params) as response:
                    assert response.status == 200, f"GET {path}: HTTP {response.status}"
                    text = await response.text()
                held[f"Nomad GET {path} {params or ''}"] = text
                return text

            await get("/v1/jobs", prefix="hrwsi-")
            jobs = [row[0] for row in db.execute("SELECT backend_job_id FROM hrwsi.job WHERE backend = 'nomad'")]
            assert len(jobs) == 2
            for job_id in jobs:
                spec = await get(f"/v1/job/{job_id}")
                assert '"Env"' in spec and "HRWSI_TASK_ID" in spec, "the spec holds the task's environment"
                allocations = json.loads(await get(f"/v1/job/{job_id}/allocations"))
                assert allocations, f"job {job_id} ran"
                for allocation in allocations:
                    await get(f"/v1/allocation/{allocation['ID']}")
                    for task in allocation["TaskStates"]:
                        for kind in ("stdout", "stderr"):
                            await get(f"/v1/client/fs/logs/{allocation['ID']}", task=task, type=kind, plain="true")

    home = tmp_path / "home"
    assert_no_secret({"NOMAD_TOKEN": [token], "the database password": [password]},
                     {**outputs(processes), **files_under(home), **database_rows(db), **held,
                      **files_under(tmp_path / "nomad")})
    # ... where a leak would have been: the tasks' environments in their Nomad logs and in the job logs.
    assert any("routine environment:" in text for where, text in held.items() if "/fs/logs/" in where)
    assert "routine environment:" in job_logs(home), "the Nomad task logs were collected into the job logs"
    assert "DEBUG" in up.output(), "the services logged at DEBUG"
    assert "could not register" in up.output(), "the backend logged Nomad's refusals"


# -- 3. the alert credentials ----------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")  # on 127.0.0.1 only
async def test_alert_credentials_stay_out_of_logs_and_tables(db, database_url, service_login, processes, tmp_path,
                                                             unused_tcp_port_factory):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    _, password, url = service_login
    smtp_user = "hrwsi-alerts"
    smtp_password = distinctive("smtppassword")
    hook_user = "hrwsi-hook"
    hook_password = distinctive("hookpassword")
    expected_auth = "Basic " + b64(f"{hook_user}:{hook_password}")

    # A webhook that wants the credentials of its URL and refuses (503) until told otherwise.
    hook = {"refuse": True, "received": [], "authorised": 0}

    async def receive(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != expected_auth:
            return web.Response(status=401, text="who are you?")
        hook["authorised"] += 1
        if hook["refuse"]:
            return web.Response(status=503, text="busy, try again later")
        hook["received"].append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    http_port = unused_tcp_port_factory()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()

    # An SMTP server that wants a login (without TLS, on 127.0.0.1 only).
    logins, mails = [], []

    def authenticate(server, session, envelope, mechanism, data):
        logins.append((mechanism, data.login.decode(), data.password.decode()))
        return AuthResult(success=data.login.decode() == smtp_user and data.password.decode() == smtp_password)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            mails.append(envelope.content.decode(errors="replace"))
            return "250 OK"

    smtp_port = unused_tcp_port_factory()
    controller = Controller(Handler(), hostname="127.0.0.1", port=smtp_port, authenticator=authenticate,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    try:
        load(db, single_routine_configuration(ROUTINE, max_attempts=1))
        alerting = {"HRWSI_ALERT_SMTP_HOST": "127.0.0.1", "HRWSI_ALERT_SMTP_PORT": str(smtp_port),
                    "HRWSI_ALERT_SMTP_TO": "ops@example.org", "HRWSI_ALERT_SMTP_USER": smtp_user,
                    "HRWSI_ALERT_SMTP_PASSWORD": smtp_password}
        webhook = f"http://{hook_user}:{hook_password}@127.0.0.1:{http_port}/hook"
        # First with a typo in the webhook's port (an extra digit): the URL cannot be used at all.
        typo = f"http://{hook_user}:{hook_password}@127.0.0.1:{http_port}9/hook"
        assert int(f"{http_port}9") > 65535, "the typo makes the port invalid"
        first = processes("up-webhook-typo", ["up"],
                          service_env(tmp_path, url, HRWSI_ALERT_WEBHOOK_URL=typo, **alerting))
        insert_inputs(db, 1, prefix="/in/fail-")
        await wait_until(database_url, "SELECT attempts >= 1 AND last_error IS NOT NULL FROM hrwsi.alert")
        after_typo = database_rows(db)
        assert await first.stop() == 0, first.output()[-3000:]
        assert hook["authorised"] == 0 and not logins

        # Then with the right URL: refused (503) until the failure is recorded, then delivered, mail too.
        second = processes("up", ["up"], service_env(tmp_path, url, HRWSI_ALERT_WEBHOOK_URL=webhook, **alerting))
        await wait_until(database_url, "SELECT last_error LIKE '%HTTP 503%' FROM hrwsi.alert")
        after_refusal = database_rows(db)
        hook["refuse"] = False
        await wait_until(database_url, "SELECT sent_at IS NOT NULL FROM hrwsi.alert")
        assert await second.stop() == 0, second.output()[-3000:]
    finally:
        controller.stop()
        await runner.cleanup()

    secrets = {
        "the SMTP password": [smtp_password, b64(smtp_password), b64(f"\0{smtp_user}\0{smtp_password}")],
        "the webhook password": [hook_password, b64(f"{hook_user}:{hook_password}")],
        "the database password": [password],
    }
    assert_no_secret(secrets, {**outputs(processes), **files_under(tmp_path / "home"), **database_rows(db),
                               **{f"{k} (after the typo)": v for k, v in after_typo.items()},
                               **{f"{k} (after the refusal)": v for k, v in after_refusal.items()}})
    # The credentials were used (the webhook saw its Basic auth, the SMTP server the login) and both failures
    # were logged, so the search above looked where a leak would be.
    assert len(hook["received"]) == 1 and hook["received"][0]["kind"] == "task_terminated"
    assert (smtp_user, smtp_password) in [(login, secret) for _, login, secret in logins]
    assert len(mails) == 1 and "task" in mails[0]
    assert "could not be sent" in first.output() and "could not be sent" in second.output()
    assert "routine environment:" in job_logs(tmp_path / "home")


# -- 4. the repository -------------------------------------------------------------------------------
PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
# scheme://user:password@ (the password part: anything up to the @ but a slash, a space or a quote)
URL_WITH_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://([^\s:/@\"'`<>(){}\[\]]+):([^\s/@\"'`]+)@", re.I)
SECRET_WORD = r"(?:password|passwd|passphrase|secret(?:_?key)?|token|api_?key|private_?key|access_?key)"
# name = "literal", name: 'literal', "name": "literal", name="literal" (a keyword argument), where the
# name ends in a secret word
QUOTED_ASSIGNMENT = re.compile(
    r"""(?P<name>[A-Za-z0-9_.-]*""" + SECRET_WORD + r""")["']?\s*(?::=|=(?!=)|:)\s*"""
    r"""(?P<value>"[^"\n]*"|'[^'\n]*')"""
    r"""(?=\s*(?:[,)}\];#]|$))""",  # the literal ends there: not two strings' quotes read as one
    re.I | re.M)
# NAME=value as in a .env file, a shell line or a Makefile (unquoted; upper-case names only)
ENV_ASSIGNMENT = re.compile(r"""(?:^|[\s;])(?:export\s+)?(?P<name>[A-Z0-9_]*""" + SECRET_WORD.upper()
                            + r""")=(?P<value>[^\s"'`;]+)""")
# Values that stand for a secret without being one.
PLACEHOLDER = re.compile(r"""^(?:|\.\.\.|…|<[^>]*>|\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\{\{.*|\{[^}]*\}|
                              %s|%\([a-z_]+\)s|x+|\*+|changeme|change-me|redacted|none|null|
                              password|passwd|secret|token|example)$""",
                         re.I | re.X)
ASSIGNMENT_SUFFIXES = {".toml", ".hcl", ".env", ".nomad", ".py", ".md", ".sh", ".yml", ".yaml", ".ini", ".cfg",
                       ".json", ".txt", ".sql"}
# Where NAME=value (unquoted) is an assignment too; "" is a file without extension (a script, the Makefile).
ENV_STYLE_SUFFIXES = {".env", ".sh", ".md", ".hcl", ".nomad", ""}

# Fake secrets committed on purpose, each to check that hrwsi keeps such a value out of a job spec or refuses it;
# none of them opens anything. (file, value) -> why. Any other literal in these files is still reported.
ALLOWED = {
    ("tests/unit/test_nomad_job_spec.py", "b7e1f0d2-0000-4000-8000-c0ffee000001"):
        "a fake Nomad token: build_job must keep it out of the spec",
    ("tests/unit/test_nomad_job_spec.py", "pg-pass-7c1d9e"): "a fake password: assert_no_secrets must refuse it",
    ("tests/unit/test_nomad_job_spec.py", "aws-secret-93ab0f"): "likewise",
    ("tests/unit/test_nomad_job_spec.py", "reg-token-55e2aa"): "likewise",
    ("tests/unit/test_nomad_job_spec.py", "another-pg-pass-1"): "likewise",
    ("tests/unit/test_nomad_job_spec.py", "routine-secret-1"): "a routine variable named like a secret: left out",
    ("tests/unit/test_nomad_job_spec.py", "routine-tok-2"): "likewise",
    ("tests/unit/test_nomad_job_spec.py", "routine-pass-3"): "likewise",
    ("tests/unit/test_nomad_config.py", "tok-123456789"): "NomadConfig.from_env reads NOMAD_TOKEN",
    ("tests/contract/test_nomad_api.py", "s3cr3t-acl-token"): "the emulator's ACL token in the ACL contract test",
    ("tests/contract/test_nomad_api.py", "not-a-uuid"):
        "a malformed ACL token: Nomad answers 403 Permission denied for it, which the ACL contract test checks",
    ("tests/integration/harvest/test_harvest_constraints.py", "s3cret"):
        "a secret in a harvest source's configuration: the database must refuse it",
    ("tests/unit/test_settings.py", "hunter2"): "a fake password: a refused HRWSI_DATABASE_URL must not repeat it",
    ("tests/unit/test_settings.py", "fake-pw"): "a fake password in a URL the settings accept",
    ("tests/integration/harvest/test_catalogue.py", "UrlPwAgain88"):
        "a fake password in a catalogue URL: messages must show it as ***",
    ("tests/integration/harvest/test_catalogue.py", "t"):
        "a fake token endpoint's answer whose other fields are wrong: the run must refuse it, naming the field",
    ("tests/integration/harvest/test_catalogue.py", "r"): "likewise (a fake refresh token)",
    ("tests/integration/harvest/test_catalogue.py", "quoted"):
        "a fake access token the fake catalogue hands out with a lifetime in a string",
    ("tests/unit/test_local_backend.py", "NomadAddrPW"): "a fake password in NOMAD_ADDR: routines must not inherit it",
    ("tests/unit/test_local_backend.py", "ProxyPW"): "a fake password in a proxy URL: likewise",
}


def committed_files() -> list[str]:
    """The files git would commit: tracked, plus new ones not ignored (paths relative to ROOT)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    result = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"not a git checkout ({result.stderr.strip()})")
    return sorted({p for p in result.stdout.split("\0") if p and (ROOT / p).is_file()})


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" else value


def committed_secrets(files: list[str], root: Path = ROOT) -> list[str]:
    """What looks like a secret in `files` (relative to root), one line each: file:line: what."""
    found = []
    for relative in files:
        data = (root / relative).read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        text = data.decode("utf-8", errors="replace")
        path = Path(relative)
        suffix = path.suffix.lower() if not path.name.startswith(".env") else ".env"
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{relative}:{number}"
            if PRIVATE_KEY.search(line):
                found.append(f"{where}: a private key")
            for match in URL_WITH_PASSWORD.finditer(line):
                if not PLACEHOLDER.match(match.group(2)) and (relative, match.group(2)) not in ALLOWED:
                    found.append(f"{where}: a URL with a password: {match.group(0)}")
            if suffix not in ASSIGNMENT_SUFFIXES and suffix not in ENV_STYLE_SUFFIXES:
                continue
            patterns = [QUOTED_ASSIGNMENT, ENV_ASSIGNMENT] if suffix in ENV_STYLE_SUFFIXES else [QUOTED_ASSIGNMENT]
            for pattern in patterns:
                for match in pattern.finditer(line):
                    value = _unquote(match.group("value")).strip()
                    if not PLACEHOLDER.match(value) and (relative, value) not in ALLOWED:
                        found.append(f"{where}: {match.group('name')} is given a literal: {match.group(0).strip()}")
    return found


def test_the_scan_finds_what_it_looks_for(tmp_path):
    """The scanner itself: it reports each kind of committed secret, and lets placeholders through."""
    samples = {
        "key.pem": "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n",
        "notes.md": "connect with postgresql://hrwsi:" + "hunter2x@db:5432/hrwsi\n",
        "settings.toml": 'smtp_pass' + 'word = "hunter2x"\n',
        "deploy.env": "NOMAD_TOK" + "EN=3f1c9a7e-22b1-4c55-9d0e-1a2b3c4d5e6f\n",
        "tool.py": 'connect(api_tok' + 'en="abc123def")\n',
        "fine.md": ("postgresql://hrwsi:<password>@db/hrwsi  postgresql://u:...@h/d  NOMAD_TOKEN=...\n"
                    'password = "${DB_PASSWORD}"\ntoken = "{{ .nomad_token }}"\npassword_env = "CDSE_PASSWORD"\n'),
    }
    for name, text in samples.items():
        (tmp_path / name).write_text(text)
    found = committed_secrets(sorted(samples), tmp_path)
    reported = {line.split(":", 1)[0] for line in found}
    assert reported == {"key.pem", "notes.md", "settings.toml", "deploy.env", "tool.py"}, found


def test_no_secret_is_committed():
    files = committed_files()
    assert "pyproject.toml" in files and any(f.startswith("nomad-jobs/") for f in files)
    found = committed_secrets(files)
    assert not found, "secrets in committed files (a fake one for a test goes into ALLOWED, with why):\n" + \
        "\n".join(found)
    stale = sorted({path for path, _ in ALLOWED if path not in files})
    assert not stale, f"ALLOWED names files that are gone: {stale}"


SECRET_ENV_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|DATABASE_URL|WEBHOOK", re.I)


def blocks(text: str, kind: str) -> list[str]:
    """The bodies of every `kind { ... }` or `kind "label" { ... }` block (braces counted: heredocs pair theirs)."""
    found = []
    for match in re.finditer(r'(?m)^\s*' + kind + r'(?:\s+"[^"]*")?\s*\{', text):
        depth, start = 1, match.end()
        for at in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[at], 0)
            if depth == 0:
                found.append(text[start:at])
                break
    return found


def test_nomad_job_specs_take_secrets_from_nomad_variables_only():
    specs = sorted((ROOT / "nomad-jobs").glob("*.hcl"))
    assert specs
    for path in specs:
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        for body in blocks(text, "env"):
            names = re.findall(r"(?m)^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", body)
            assert not [n for n in names if SECRET_ENV_NAME.search(n)], f"{path.name}: a secret in an env block"
        for name in re.findall(r'(?m)^\s*variable\s+"([^"]+)"', text):
            assert not SECRET_ENV_NAME.search(name), f"{path.name}: variable {name} would put a secret in the job"
        templates = blocks(text, "template")
        for match in re.finditer(r"(?m)^\s*([A-Z][A-Z0-9_]*)\s*=\s*(.*)$", text):
            name, value = match.groups()
            if not SECRET_ENV_NAME.search(name):
                continue
            assert value.strip().startswith("{{"), f"{path.name}: {name} is given a literal, not a Nomad Variable"
            inside = [t for t in templates if match.group(0).strip() in t]
            assert inside and all("nomadVar" in t for t in inside), \
                f"{path.name}: {name} must come from a template reading a Nomad Variable"
        if path.name != "hrwsi-routine-example.nomad.hcl":
            # A service: its database URL comes from a Nomad Variable through a template exported as env.
            secret_templates = [t for t in templates if "HRWSI_DATABASE_URL=" in t]
            assert secret_templates, f"{path.name}: where does HRWSI_DATABASE_URL come from?"
            for template in secret_templates:
                assert "nomadVar" in template and re.search(r"(?m)^\s*env\s*=\s*true", template)
                assert re.search(r'(?m)^\s*destination\s*=\s*"secrets/', template), \
                    f"{path.name}: render secrets into the task's secrets/ directory"
