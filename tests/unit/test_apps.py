"""Apps: a vassal file's [fleet] app/host/path (fleet.vassalfile.app), the rules across files
(fleet.core.apps), per-app routing (fleet.core.routing) and decide() failing the vassals that break a rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.core.actions import Route
from fleet.core.apps import DEFAULT, App, resolve
from fleet.core.model import Backend, Model
from fleet.core.observations import FileInfo, Observed, Probe, Wanted
from fleet.core.reconcile import decide
from fleet.core.routing import wanted_routes
from fleet.core.settings import Settings
from fleet.core.states import State
from fleet.vassalfile import vassals
from fleet.vassalfile.app import AppIdentity

S = State
T0 = 1000.0
V1 = 1_700_000_000 * 10**9
V2 = V1 + 5 * 10**9
BLOG = App("blog", (), "/blog")
SHOP = App("shop", ("shop.example.com",), "/")


def parsed(text: str) -> vassals.VassalFile:
    return vassals.parse(Path("vassals/x.ini"), text.encode())


# ---- one file's [fleet] app, host and path -------------------------------------------------------------


def test_a_file_without_a_fleet_section_serves_the_default_app_on_any_host_at_the_root():
    assert parsed("[uwsgi]\nprocesses = 2\n").app == AppIdentity("default", (), "/", "")


def test_app_host_and_path_are_read_with_hosts_lower_cased_and_sorted():
    f = parsed("[uwsgi]\n[fleet]\napp = blog_2\nhost = WWW.example.com  *.example.org\npath = /blog/v2\n")
    assert f.valid, f.problems
    assert f.app == AppIdentity("blog_2", ("*.example.org", "www.example.com"), "/blog/v2", "")


@pytest.mark.parametrize(
    "line, message",
    [
        ("app = my blog", "is not an app name"),
        ("app = blog/x", "is not an app name"),
        ("host = exa_mple.com", "is not a host name"),
        ("host = *.com", "too wide"),
        ("host = a.*.com", "is not a host name"),
        ("host =", "host is empty"),
        ("path = blog", "does not start with /"),
        ("path = /blog/", "ends with /"),
        ("path = /blog/../admin", "segment"),
        ("path = /a//b", "segment"),
        ("path = /bl og", "characters other than"),
        ('path = /b"x', "characters other than"),
    ],
)
def test_a_bad_app_host_or_path_is_a_problem_with_its_line_and_a_fix(line, message):
    f = parsed(f"[uwsgi]\n[fleet]\n{line}\n")
    assert not f.valid
    (problem,) = f.problems
    assert message in problem.message
    assert problem.line == 3
    assert problem.fix


def test_app_keys_are_known_to_the_fleet_section_and_a_typo_is_still_caught():
    f = parsed("[uwsgi]\n[fleet]\napp = a\nhost = a.example.com\npath = /a\nhots = b.example.com\n")
    assert [p.message for p in f.problems] == ["unknown [fleet] setting 'hots'"]


# ---- the rules across files ----------------------------------------------------------------------------


def test_no_file_naming_an_app_gives_the_default_app_alone():
    r = resolve({"a": DEFAULT, "b": DEFAULT})
    assert r.apps == (DEFAULT,)
    assert r.problems == {}
    assert r.app_of == {"a": "default", "b": "default"}


def test_no_files_at_all_still_serve_the_default_app():
    assert resolve({}).apps == (DEFAULT,)


def test_apps_are_listed_first_seen_first():
    r = resolve({"b1": BLOG, "d1": DEFAULT, "s1": SHOP}, order=["s1", "d1"])
    assert r.apps == (SHOP, DEFAULT, BLOG)
    assert r.problems == {}


def test_a_vassal_that_disagrees_with_its_apps_first_vassal_fails_and_the_others_do_not():
    moved = App("blog", (), "/news")
    r = resolve({"b1": BLOG, "b2": moved, "b3": BLOG}, order=["b1", "b3"])
    assert set(r.problems) == {"b2"}
    assert "path /news" in r.problems["b2"] and "b1 (seen first) says path /blog" in r.problems["b2"]
    assert r.apps == (BLOG,)


def test_disagreeing_on_static_is_disagreeing():
    r = resolve({"b1": BLOG, "b2": App("blog", (), "/blog", "/static static")}, order=["b1"])
    assert "static /static static" in r.problems["b2"]


def test_the_later_of_two_apps_claiming_one_host_and_path_fails_with_the_reason():
    blog2 = App("blog2", (), "/blog")
    r = resolve({"x": blog2, "y": BLOG, "z": blog2}, order=["y"])
    assert r.apps == (BLOG,)
    assert set(r.problems) == {"x", "z"}
    assert "app 'blog' (seen first) already serves" in r.problems["x"]


def test_one_shared_host_among_several_is_a_clash_but_another_path_or_host_is_not():
    r = resolve(
        {
            "s1": SHOP,
            "s2": App("api", ("shop.example.com",), "/api"),
            "s3": App("admin", ("admin.example.com",), "/"),
            "s4": App("other", ("other.example.com", "shop.example.com"), "/"),
        },
        order=["s1", "s2", "s3", "s4"],
    )
    assert [a.name for a in r.apps] == ["shop", "api", "admin"]
    assert set(r.problems) == {"s4"}


# ---- routing, app by app -------------------------------------------------------------------------------


def b(name: str, state: State, app: str = "default", **kw) -> Backend:
    return Backend(name, state, T0, V1, V1, app=app, **kw)


def test_a_reloading_backend_stays_routed_when_only_another_apps_backend_serves():
    backends = {"d1": b("d1", S.HEALTHY), "b1": b("b1", S.RELOADING, "blog")}
    assert wanted_routes(frozenset({"d1", "b1"}), backends, T0, 1.0) == {"d1", "b1"}


def test_a_reloading_backend_leaves_when_a_backend_of_its_own_app_serves():
    backends = {"b1": b("b1", S.HEALTHY, "blog"), "b2": b("b2", S.RELOADING, "blog"), "d1": b("d1", S.HEALTHY)}
    assert wanted_routes(frozenset(backends), backends, T0, 1.0) == {"b1", "d1"}


def test_a_starting_backend_of_one_app_does_not_hold_back_another_apps_new_backend():
    backends = {
        "d1": b("d1", S.HEALTHY),
        "d2": b("d2", S.STARTING),
        "b1": b("b1", S.HEALTHY, "blog"),
        "b2": b("b2", S.HEALTHY, "blog", ready_at=T0),
    }
    assert wanted_routes(frozenset({"d1", "b1"}), backends, T0, 1.0) == {"d1", "b1", "b2"}


# ---- decide(): the rules applied -----------------------------------------------------------------------


def step(m: Model, files: dict[str, FileInfo], routed: set[str], apps=(DEFAULT,), **seen):
    observed = Observed(routed=frozenset(routed), apps=tuple(apps), **seen)
    return decide(Wanted(files), observed, m, Settings(), T0)


def test_a_new_app_is_routed_with_the_apps_nginx_must_serve_and_each_backends_app():
    m = Model({"d1": b("d1", S.HEALTHY), "b1": b("b1", S.STARTING, "blog")})
    files = {"d1": FileInfo(V1), "b1": FileInfo(V1, app=BLOG)}
    d = step(m, files, {"d1"}, probes={"b1": Probe(True)})
    assert d.actions[0] == Route(frozenset({"d1", "b1"}), (DEFAULT, BLOG), (("b1", "blog"),))


def test_a_backend_joining_an_app_nginx_already_serves_changes_no_app():
    m = Model({"b1": b("b1", S.HEALTHY, "blog"), "b2": b("b2", S.STARTING, "blog")})
    files = {"b1": FileInfo(V1, app=BLOG), "b2": FileInfo(V1, app=BLOG)}
    d = step(m, files, {"b1"}, apps=(BLOG,), probes={"b2": Probe(True)})
    assert d.actions[0] == Route(frozenset({"b1", "b2"}), None, (("b1", "blog"), ("b2", "blog")))


def test_a_new_vassal_that_disagrees_with_its_app_fails_and_the_app_serves_on():
    m = Model({"b1": b("b1", S.HEALTHY, "blog")})
    files = {"b1": FileInfo(V1, app=BLOG), "b2": FileInfo(V1, app=App("blog", (), "/news"))}
    d = step(m, files, {"b1"}, apps=(BLOG,), members={"b1": "blog"})
    assert d.model.backends["b2"].state == S.FAILED
    assert "must agree" in d.model.backends["b2"].error
    assert d.model.backends["b1"].state == S.HEALTHY
    assert not [a for a in d.actions if isinstance(a, Route)]


def test_a_serving_backend_whose_app_leader_moved_fails_though_its_own_file_did_not_change():
    m = Model({"b1": b("b1", S.HEALTHY, "blog"), "b2": b("b2", S.HEALTHY, "blog")})
    files = {"b1": FileInfo(V2, app=App("blog", (), "/news")), "b2": FileInfo(V1, app=BLOG)}
    d = step(m, files, {"b1", "b2"}, apps=(BLOG,))
    assert d.model.backends["b2"].state == S.FAILED
    assert "must agree" in d.model.backends["b2"].error
    assert d.model.backends["b1"].state == S.RELOADING


def test_a_failed_rule_breaker_serves_again_once_the_rule_holds_and_it_answers():
    m = Model({"x": b("x", S.FAILED, "blog2", error="clash")})
    files = {"x": FileInfo(V1, app=App("blog2", (), "/blog"))}
    d = step(m, files, set(), probes={"x": Probe(True)})
    assert d.model.backends["x"].state == S.HEALTHY


def test_a_new_app_enters_nginx_only_with_its_first_routed_backend_so_creating_it_reloads_once():
    m = Model({"d1": b("d1", S.HEALTHY)})
    files = {"d1": FileInfo(V1), "b1": FileInfo(V1, app=BLOG)}
    starting = step(m, files, {"d1"}, probes={"b1": Probe(False, "connection refused")})
    assert starting.model.backends["b1"].state == S.STARTING
    assert not [a for a in starting.actions if isinstance(a, Route)]
    healthy = step(starting.model, files, {"d1"}, probes={"b1": Probe(True)})
    assert healthy.actions[0] == Route(frozenset({"d1", "b1"}), (DEFAULT, BLOG), (("b1", "blog"),))


def test_an_app_nginx_serves_stays_while_no_backend_serves_and_leaves_with_its_last_file():
    m = Model({"d1": b("d1", S.HEALTHY), "b1": b("b1", S.HEALTHY, "blog")})
    files = {"d1": FileInfo(V1), "b1": FileInfo(V1, app=BLOG)}
    ejected = step(m, files, {"d1", "b1"}, apps=(DEFAULT, BLOG), probes={"b1": Probe(False, "refused")})
    assert all(a.apps is None for a in ejected.actions if isinstance(a, Route))
    gone = step(m, {"d1": FileInfo(V1)}, {"d1"}, apps=(DEFAULT, BLOG))
    assert gone.actions[0] == Route(frozenset({"d1"}), (DEFAULT,), ())


def test_a_routed_backend_whose_app_changed_is_routed_again_under_its_new_app():
    m = Model({"d1": b("d1", S.HEALTHY), "x": b("x", S.HEALTHY, "blog")})
    files = {"d1": FileInfo(V1), "x": FileInfo(V1)}
    d = step(m, files, {"d1", "x"}, apps=(DEFAULT, BLOG), members={"x": "blog"})
    assert d.actions[0] == Route(frozenset({"d1", "x"}), (DEFAULT,), ())
