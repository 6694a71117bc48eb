"""Redis AUTH with a password and with a least-privilege ACL user, TLS, and no secret shown."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme
from helpers import sample
from redis_server import RedisServer

from shardmon import cli
from shardmon.connection import RedisTarget, create_redis
from shardmon.keys import Keys
from shardmon.monitor import MonitorConfig, build_monitor
from shardmon.settings import load_settings
from shardmon.store import Store

PASSWORD = "pw-9f3c1d"
#: The least a shardmon process needs (the README's ACL): its keys only, no admin commands.
ACL = ["on", f">{PASSWORD}", "~shardmon:*", "+@read", "+@write", "+@scripting",
       "+@transaction", "+@connection", "-@dangerous"]  # fmt: skip


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", "--requirepass", PASSWORD)
    server.ping_options = {"password": PASSWORD}
    server.start()
    yield server
    server.kill()


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server whose default user is off: only `shardmon`, with the README's ACL, gets in."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    with redis.Redis(port=server.port) as admin:
        admin.execute_command("ACL", "SETUSER", "shardmon", *ACL)
        admin.execute_command("ACL", "SETUSER", "admin", "on", ">admin-pw", "~*", "&*", "+@all")
        admin.execute_command("ACL", "SETUSER", "default", "off")
    yield server
    server.kill()


async def _round_trip(url: str | RedisTarget, deployment: str, tmp_path: Path) -> int:
    """A monitor samples, logs a restart and leads once; returns the restarts in Redis."""
    client = create_redis(url)
    config = MonitorConfig(deployment=deployment, shard_ids=(0, 1), shard_count=2,
                           journal_path=tmp_path / "j.log", sample_interval_s=3600)  # fmt: skip
    monitor = build_monitor(config, client)
    await monitor.start(sample=False)
    await monitor.sample_once()
    await monitor.log_restart("manual")
    assert monitor.sampler.redis_available and not monitor.sampler.pending
    assert await monitor.election.campaign_once() and await monitor.judge.tick()
    store = Store(client, Keys(deployment))
    stats = await store.restart_stats()
    await monitor.stop()
    await client.aclose()
    return stats.total


async def test_a_password_protected_redis(password_redis: RedisServer, tmp_path: Path) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{password_redis.port}/0"
    assert await _round_trip(url, "auth", tmp_path) == 1


async def test_an_acl_user_with_only_shardmon_keys_and_no_admin_commands(
    acl_redis: RedisServer, tmp_path: Path
) -> None:
    url = f"redis://shardmon:{PASSWORD}@127.0.0.1:{acl_redis.port}/0"
    assert await _round_trip(url, "acl", tmp_path) == 1
    client = create_redis(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        await client.set("someone-elses-key", "x")  # the ACL is not wider than it says
    with pytest.raises(redis.exceptions.NoPermissionError):
        await client.flushall()
    await client.aclose()


def test_a_wrong_password_is_one_clear_line_without_the_password(
    password_redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "wrong-pw-77a1"
    monkeypatch.setenv("SHARDMON_REDIS_URL", f"redis://:{wrong}@127.0.0.1:{password_redis.port}/0")
    with caplog.at_level(logging.DEBUG):
        code = cli.main(["status"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "invalid username-password pair" in err.lower() or "auth" in err.lower()
    assert wrong not in err and wrong not in caplog.text and PASSWORD not in err
    settings = load_settings()
    assert wrong not in repr(settings) and wrong not in repr(settings.redis_target())
    assert wrong not in str(settings.model_dump())


def _tls_server(folder: Path, *names: str) -> tuple[RedisServer, Path]:
    """A redis-server that speaks only TLS, with a certificate for `names` made here."""
    ca = trustme.CA()
    cert = ca.issue_cert(*names)
    folder.mkdir(parents=True)
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    server = RedisServer(folder / "redis")
    server.extra_args = (
        "--port", "0", "--tls-port", str(server.port), "--tls-auth-clients", "no",
        "--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file),
        "--tls-ca-cert-file", str(ca_file),
    )  # fmt: skip
    server.ping_options = {"ssl": True, "ssl_ca_certs": str(ca_file), "ssl_check_hostname": False}
    server.start()
    return server, ca_file


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    server, ca_file = _tls_server(tmp_path / "tls", "127.0.0.1", "localhost")
    yield server, ca_file
    server.kill()


async def test_tls_with_a_verified_certificate(
    tls_redis: tuple[RedisServer, Path], tmp_path: Path
) -> None:
    server, ca_file = tls_redis
    url = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={ca_file}"
    assert await _round_trip(url, "tls", tmp_path) == 1


async def test_tls_refuses_a_certificate_it_cannot_verify(
    tls_redis: tuple[RedisServer, Path], tmp_path: Path
) -> None:
    server, _ = tls_redis
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    client = create_redis(f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={other_ca}")
    with pytest.raises(redis.ConnectionError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        await Store(client, Keys("tls")).push_samples([(sample(0), 1)])
    await client.aclose()
    # And a plain-text client cannot talk to it at all.
    plain = create_redis(f"redis://127.0.0.1:{server.port}/0", timeout_s=1)
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        await plain.ping()
    await plain.aclose()


async def test_tls_refuses_a_certificate_for_another_host(tmp_path: Path) -> None:
    server, ca_file = _tls_server(tmp_path / "tls", "redis.example.internal")
    try:
        client = create_redis(f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={ca_file}")
        with pytest.raises(redis.ConnectionError, match=r"(?i)hostname|IP address mismatch"):
            await client.ping()
        await client.aclose()
    finally:
        server.kill()
