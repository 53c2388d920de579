"""The GitHub client and search slicing against the local fake GitHub (SYNTHETIC data, 127.0.0.1 only, fake clock)."""

from __future__ import annotations

from datetime import date

import pytest

from issuerisk.conf.secrets import SecretFormatError, redact
from issuerisk.github.client import GitHubClient, origin, parse_links, tokens_from_env
from issuerisk.github.exceptions import GitHubStatusError, RetriesExhausted
from issuerisk.github.search import Slice, search_repositories, split
from tests.fakes.github_server import FakeClock, FakeGitHub, Fault, synthetic_issues, synthetic_repos

REPO = "synthetic-org/alpha"
SECRET = "ghp_synthetic_secret_token_0001"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def server(clock):
    with FakeGitHub({REPO: synthetic_issues(REPO, 250)}, clock=clock, core_limit=1000) as gh:
        yield gh


def make_client(server, clock, tokens=(SECRET,), **kw):
    options = dict(
        max_retries=3, backoff_base_s=1.0, backoff_max_s=8.0, secondary_wait_s=60.0, clock=clock, sleep=clock.sleep
    )
    options.update(kw)
    return GitHubClient(server.url, list(tokens), **options)


def issues_path(per_page=100):
    return f"/repos/{REPO}/issues?state=all&per_page={per_page}&sort=created&direction=asc"


def fetch_all(client, url):
    numbers = []
    while url:
        response = client.get(url)
        numbers += [i["number"] for i in response.data]
        url = response.links.get("next")
    return numbers


def test_follows_link_headers_to_the_last_page(server, clock):
    with make_client(server, clock) as client:
        assert fetch_all(client, issues_path()) == list(range(1, 251))
        assert client.stats.requests == 3


def test_parse_links_reads_every_rel():
    header = '<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=9>; rel="last"'
    assert parse_links(header) == {"next": "https://api.github.com/x?page=2", "last": "https://api.github.com/x?page=9"}
    assert parse_links(None) == {}


def test_primary_limit_waits_for_reset_instead_of_failing(clock):
    with FakeGitHub({REPO: synthetic_issues(REPO, 250)}, clock=clock, core_limit=2, core_window_s=600) as gh:
        start = clock()
        with make_client(gh, clock) as client:
            assert fetch_all(client, issues_path()) == list(range(1, 251))
        assert client.stats.rate_limit_waits == 1
        assert clock() >= start + 600
        assert gh.served("/issues", 403) == 0


def test_spent_limit_answer_is_waited_out(clock):
    """The server says 403 remaining=0 before the client knew its quota (another process used it)."""
    with FakeGitHub({REPO: synthetic_issues(REPO, 10)}, clock=clock, core_limit=1, core_window_s=300) as gh:
        with make_client(gh, clock) as other:
            other.get(issues_path())
        with make_client(gh, clock) as client:
            assert len(client.get(issues_path(per_page=5)).data) == 5
        assert gh.served("/issues", 403) == 1
        assert clock() >= 1704067200.0 + 300


def test_tokens_rotate_by_remaining_quota(clock):
    with FakeGitHub({REPO: synthetic_issues(REPO, 400)}, clock=clock, core_limit=2) as gh:
        with make_client(gh, clock, tokens=("tok_synthetic_a_123456", "tok_synthetic_b_123456")) as client:
            assert len(fetch_all(client, issues_path())) == 400
        assert gh.auth_seen == {"tok_synthetic_a_123456", "tok_synthetic_b_123456"}
        assert client.stats.rate_limit_waits == 0


def test_secondary_limit_waits_retry_after(server, clock):
    server.faults.append(
        Fault("/issues", 403, headers={"Retry-After": "7"}, message="You have exceeded a secondary rate limit")
    )
    with make_client(server, clock) as client:
        assert len(client.get(issues_path()).data) == 100
    assert client.stats.secondary_waits == 1
    assert clock.slept == [7.0]


def test_secondary_limit_without_retry_after_waits_a_minute_then_doubles(server, clock):
    server.faults.append(Fault("/issues", 429, times=2, message="You have exceeded a secondary rate limit"))
    with make_client(server, clock) as client:
        client.get(issues_path())
    assert clock.slept == [60.0, 120.0]


def test_5xx_are_retried_with_bounded_jittered_backoff(server, clock):
    server.faults.append(Fault("/issues", 502, times=2))
    with make_client(server, clock) as client:
        assert len(client.get(issues_path()).data) == 100
    assert client.stats.retries == 2
    assert len(clock.slept) == 2 and 0 <= clock.slept[0] <= 1.0 and 0 <= clock.slept[1] <= 2.0


def test_5xx_past_max_retries_raises_without_the_token(server, clock):
    server.faults.append(Fault("/issues", 503, times=10))
    with (
        make_client(server, clock, max_retries=2) as client,
        pytest.raises(RetriesExhausted, match="after 2 retries") as err,
    ):
        client.get(issues_path())
    assert SECRET not in str(err.value) and SECRET not in repr(client)


def test_dropped_connections_are_retried(server, clock):
    server.faults.append(Fault("/issues", drop=True))
    with make_client(server, clock) as client:
        assert len(client.get(issues_path()).data) == 100
    assert client.stats.retries == 1


def test_etag_revalidation_returns_304_without_spending_quota(server, clock):
    with make_client(server, clock) as client:
        first = client.get(issues_path())
        second = client.get(issues_path())
        third = client.get(issues_path(), etag=first.etag)
    assert second.not_modified and second.data == first.data
    assert third.not_modified
    assert client.stats.not_modified == 2
    assert server.served("/issues", 304) == 2
    assert server._quota(SECRET, "core").remaining == 1000 - 1


def test_changed_resource_answers_200_despite_old_etag(server, clock):
    with make_client(server, clock) as client:
        old = client.get(issues_path(per_page=5))
        clock.now += 10
        server.edit(REPO, 3, title="edited")
        new = client.get(issues_path(per_page=5), etag=old.etag)
    assert not new.not_modified and new.data[2]["title"] == "edited"


@pytest.mark.parametrize(
    ("status", "message"),
    [(404, "Not Found"), (410, "Issues are disabled for this repo"), (451, "Repository access blocked")],
)
def test_client_errors_raise_status_errors(server, clock, status, message):
    server.set_status(REPO, status, message)
    with make_client(server, clock) as client, pytest.raises(GitHubStatusError) as err:
        client.get(issues_path())
    assert err.value.status == status and err.value.message == message


def test_tokens_from_env_prefers_the_list_and_drops_blanks():
    assert tokens_from_env({"GITHUB_TOKENS": " a1 ,b2,,a1", "GITHUB_TOKEN": "c3"}) == ["a1", "b2"]
    assert tokens_from_env({"GITHUB_TOKEN": "c3"}) == ["c3"]
    assert tokens_from_env({}) == []


@pytest.mark.parametrize("variable", ["GITHUB_TOKENS", "GITHUB_TOKEN"])
def test_tokens_from_env_refuses_a_newline_between_tokens_without_printing_them(variable):
    value = f"{SECRET}\nghp_synthetic_secret_token_0002"
    with pytest.raises(
        SecretFormatError,
        match=rf"^{variable} holds a newline \(U\+000A\) at character {len(SECRET) + 1}; .*commas only",
    ) as err:
        tokens_from_env({variable: value})
    assert "ghp_" not in str(err.value)


def test_tokens_from_env_checks_only_the_variable_it_reads():
    assert tokens_from_env({"GITHUB_TOKENS": SECRET, "GITHUB_TOKEN": "ignored\tvalue"}) == [SECRET]


def test_client_refuses_a_token_with_a_control_character():
    with pytest.raises(
        SecretFormatError, match=r"^token #2 holds a carriage return \(U\+000D\) at character 5;"
    ) as err:
        GitHubClient("https://api.github.com", [SECRET, "ghp_\rsynthetic"])
    assert "synthetic" not in str(err.value)


def test_token_is_not_sent_to_another_host_a_link_names(clock):
    with (
        FakeGitHub({REPO: synthetic_issues(REPO, 250)}, clock=clock) as elsewhere,
        FakeGitHub({REPO: synthetic_issues(REPO, 250)}, clock=clock, link_base=elsewhere.url) as gh,
    ):
        with make_client(gh, clock) as client:
            assert fetch_all(client, issues_path()) == list(range(1, 251))
        assert [h.get("Authorization") for h in gh.headers_seen] == [f"Bearer {SECRET}"]
        assert len(elsewhere.headers_seen) == 2  # pages 2 and 3, each linked from the page before it
        assert all("Authorization" not in h for h in elsewhere.headers_seen) and elsewhere.auth_seen == set()


def test_origin_is_scheme_host_and_port_with_default_ports():
    assert (
        origin("https://API.github.com/repos?page=2")
        == origin("https://api.github.com:443/")
        == ("https", "api.github.com", 443)
    )
    assert origin("http://api.github.com/") != origin("https://api.github.com/")
    assert origin("https://api.github.com.evil.example/") != origin("https://api.github.com/")
    assert origin("https://x:y@api.github.com:8443/") == ("https", "api.github.com", 8443)


def test_api_url_with_credentials_is_refused_without_echoing_them():
    with pytest.raises(ValueError, match="github.api_url carries credentials \\(a user:password@ part\\)") as err:
        GitHubClient(f"https://x-access-token:{SECRET}@ghe.example/api/v3")
    assert SECRET not in str(err.value)


def test_redact_and_unauthenticated_warning(server, clock, caplog):
    assert redact(f"Bearer {SECRET} failed", [SECRET]) == "Bearer *** failed"
    with make_client(server, clock, tokens=()):
        pass
    assert "unauthenticated" in caplog.text


def test_bad_api_url_is_rejected():
    with pytest.raises(ValueError, match="github.api_url must be an http"):
        GitHubClient("api.github.com")


def test_split_halves_dates_then_stars():
    whole = Slice(date(2020, 1, 1), date(2020, 1, 4), 100)
    assert split(whole, 900) == [
        Slice(date(2020, 1, 1), date(2020, 1, 2), 100),
        Slice(date(2020, 1, 3), date(2020, 1, 4), 100),
    ]
    day = Slice(date(2020, 1, 1), date(2020, 1, 1), 100)
    assert split(day, 300) == [
        Slice(day.created_from, day.created_to, 100, 200),
        Slice(day.created_from, day.created_to, 201, 300),
    ]
    assert split(Slice(day.created_from, day.created_to, 150, 150), 150) == []
    assert whole.qualifiers() == "stars:>=100 created:2020-01-01..2020-01-04"


def test_search_slices_past_the_1000_cap_and_loses_nothing(clock):
    repos = synthetic_repos(2600, "keras", days=1500)
    with FakeGitHub(search_repos=repos, clock=clock, search_limit=10) as gh, make_client(gh, clock) as client:
        whole = Slice(date(2015, 1, 1), date(2024, 1, 1), 100)
        result = search_repositories(client, "keras", whole, language="Python")
    expected = {r["full_name"] for r in repos if r["language"] == "Python"}
    assert len(expected) > 2000
    assert set(result.items) == expected
    assert result.slices >= 3 and result.truncated == []
    assert client.stats.rate_limit_waits >= 1
    assert gh.served("/search", 422) == 0


def test_search_reports_a_slice_it_cannot_cut(clock):
    repos = [dict(r, created_at="2020-05-05T00:00:00Z", stargazers_count=500) for r in synthetic_repos(1200, "torch")]
    with FakeGitHub(search_repos=repos, clock=clock, search_limit=100) as gh, make_client(gh, clock) as client:
        result = search_repositories(client, "torch", Slice(date(2020, 5, 5), date(2020, 5, 5), 100), language=None)
    assert len(result.items) == 1000
    assert result.truncated == [("torch stars:500..500 created:2020-05-05..2020-05-05", 1200)]
