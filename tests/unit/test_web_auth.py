"""hrwsi.web.auth: who may act on the dashboard, sessions and CSRF values."""

from __future__ import annotations

import pytest

from hrwsi.web.auth import Authenticator, TokenSettingError, WrongTokens, bearer_token, parse_tokens

ALICE = "alice-token-0123456789"
BOB = "bob-token-abcdefghijkl"


def test_no_token_setting_means_read_only():
    assert parse_tokens(None) == () and parse_tokens("  ") == ()
    auth = Authenticator(())
    assert not auth.enabled
    assert auth.actor_for_token(ALICE) is None
    assert auth.actor_for_session("operator|99999999999|x") is None


def test_one_token_acts_as_operator_and_named_tokens_name_their_people():
    assert parse_tokens(ALICE) == (("operator", ALICE),)
    assert parse_tokens(f"alice:{ALICE}, bob:{BOB}") == (("alice", ALICE), ("bob", BOB))


@pytest.mark.parametrize("raw, words", [
    ("short", "shorter than 16"),
    (f"alice:{ALICE},{BOB}", "has no name"),
    (f"alice:{ALICE},alice:{BOB}", "twice"),
    (f"al ice:{ALICE}", "letters, digits"),
    (f":{ALICE}", "letters, digits"),
])
def test_a_bad_token_setting_is_refused_without_echoing_the_token(raw, words):
    with pytest.raises(TokenSettingError) as refused:
        parse_tokens(raw)
    assert words in str(refused.value)
    assert ALICE not in str(refused.value) and BOB not in str(refused.value)


def test_each_token_maps_to_its_actor_and_nothing_else_does():
    auth = Authenticator(parse_tokens(f"alice:{ALICE},bob:{BOB}"))
    assert auth.actor_for_token(ALICE) == "alice"
    assert auth.actor_for_token(BOB) == "bob"
    for wrong in ("", None, ALICE[:-1], ALICE + "x", BOB.upper(), f"alice:{ALICE}"):
        assert auth.actor_for_token(wrong) is None


def test_the_authenticator_never_shows_its_tokens():
    auth = Authenticator(parse_tokens(f"alice:{ALICE}"))
    assert ALICE not in repr(auth) and ALICE not in str(auth)


def test_a_session_names_its_actor_until_it_expires_or_is_tampered_with():
    auth = Authenticator(parse_tokens(f"alice:{ALICE},bob:{BOB}"), session_s=100)
    cookie = auth.session_for("alice", now=1000)
    assert ALICE not in cookie
    assert auth.actor_for_session(cookie, now=1050) == "alice"
    assert auth.actor_for_session(cookie, now=1101) is None, "expired"
    actor, expiry, signature = cookie.split("|")
    assert auth.actor_for_session(f"bob|{expiry}|{signature}", now=1050) is None, "another actor, same signature"
    assert auth.actor_for_session(f"alice|{int(expiry) + 1000}|{signature}", now=1050) is None, "a longer life"
    assert auth.actor_for_session("garbage", now=1050) is None


def test_changing_the_tokens_ends_every_session():
    cookie = Authenticator(parse_tokens(f"alice:{ALICE}")).session_for("alice")
    assert Authenticator(parse_tokens(f"alice:{ALICE}")).actor_for_session(cookie) == "alice", "survives a restart"
    assert Authenticator(parse_tokens(f"alice:{BOB}")).actor_for_session(cookie) is None


def test_the_csrf_value_belongs_to_one_session():
    auth = Authenticator(parse_tokens(f"alice:{ALICE},bob:{BOB}"))
    alice, bob = auth.session_for("alice"), auth.session_for("bob")
    assert auth.csrf_ok(alice, auth.csrf_for(alice))
    assert not auth.csrf_ok(alice, auth.csrf_for(bob))
    assert not auth.csrf_ok(alice, "") and not auth.csrf_ok(None, auth.csrf_for(alice))


def test_bearer_tokens_are_read_from_the_authorization_header():
    assert bearer_token(f"Bearer {ALICE}") == ALICE
    assert bearer_token(f"bearer  {ALICE} ") == ALICE
    assert bearer_token(f"Basic {ALICE}") is None
    assert bearer_token("Bearer ") is None and bearer_token(None) is None


def test_wrong_tokens_are_said_once_a_minute_per_address_with_how_many_came_since():
    now = [0.0]
    wrong = WrongTokens(clock=lambda: now[0])
    assert wrong.count("10.0.0.1") == 1  # the first at once
    assert [wrong.count("10.0.0.1") for _ in range(5)] == [None] * 5
    assert wrong.count("10.0.0.2") == 1  # another address is its own
    now[0] = 61.0
    assert wrong.count("10.0.0.1") == 6  # the five unsaid and this one
    assert wrong.count("10.0.0.1") is None


def test_wrong_tokens_remember_a_bounded_number_of_addresses():
    now = [0.0]
    wrong = WrongTokens(clock=lambda: now[0])
    for n in range(WrongTokens.MAX_CLIENTS + 50):
        now[0] += 0.001
        wrong.count(f"10.1.{n // 256}.{n % 256}")
    assert len(wrong.said_at) == WrongTokens.MAX_CLIENTS and len(wrong.unsaid) <= WrongTokens.MAX_CLIENTS
