"""[fleet] static: the parser and agreement (fleet.vassalfile.static), the nginx renderer (fleet.proxy.static)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from fleet.control.observe import ClusterObserver
from fleet.core.settings import Settings
from fleet.layout import Layout
from fleet.proxy import static as render_static
from fleet.proxy.static import IMMUTABLE, Mount, location, render, unreadable, url_prefix
from fleet.vassalfile import static, vassals
from fleet.vassalfile.static import StaticMount, agree, chdir_of, parse_value


def vassal(tmp_path: Path, fleet_lines: str, uwsgi_lines: str = "") -> vassals.VassalFile:
    text = f"[uwsgi]\n{uwsgi_lines}\n[fleet]\n{fleet_lines}\n"
    return vassals.parse(tmp_path / "vassals" / "b1.ini", text.encode(), app_dir=tmp_path / "app")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app" / "static").mkdir(parents=True)
    (tmp_path / "app" / "wsgi.py").write_text("application = None\n")
    return tmp_path / "app"


# ---- the parser --------------------------------------------------------------------------------------


def test_a_folder_relative_to_the_default_chdir_is_a_mount_at_its_prefix(tmp_path, app):
    checked = vassal(tmp_path, "static = /static static")
    assert checked.valid, checked.problems
    assert checked.static == StaticMount("/static", "static", app / "static")


def test_a_trailing_slash_on_the_prefix_is_dropped(tmp_path, app):
    assert vassal(tmp_path, "static = /assets/ static").static.prefix == "/assets"


def test_an_absolute_folder_is_taken_as_is(tmp_path, app):
    assert vassal(tmp_path, f"static = /s {app / 'static'}").static.path == app / "static"


def test_the_vassals_own_chdir_is_the_base_of_a_relative_folder(tmp_path, app):
    other = tmp_path / "other"
    (other / "public").mkdir(parents=True)
    checked = vassal(tmp_path, "static = /s public", f"chdir = {other}\nmodule = wsgi")
    assert checked.static.path == other / "public"


def test_a_relative_folder_under_a_chdir_with_placeholders_is_a_problem(tmp_path, app):
    checked = vassal(tmp_path, "static = /s public", "chdir = $(HOME)/site\nmodule = wsgi")
    assert checked.static is None
    assert "chdir fleet cannot resolve" in checked.reason() and "absolute path" in checked.reason()


def test_chdir_with_percent_d_is_the_vassal_files_folder():
    assert chdir_of("%d../site", Path("/srv/fleet/vassals/b1.ini"), None) == Path("/srv/fleet/vassals/../site")


def test_chdir_with_other_placeholders_is_not_known():
    assert chdir_of("$(HOME)/site", Path("/v/b1.ini"), Path("/app")) is None


@pytest.mark.parametrize(
    "value, said",
    [
        ("/static", "is not a URL prefix and a folder"),
        ("/static a b", "is not a URL prefix and a folder"),
        ("static static", "not a URL prefix below /"),
        ("/ static", "not a URL prefix below /"),
        ("/static/../x static", "no `..`"),
        ("/a/../b static", "no `..`"),
        ("/st..atic static", "no `..`"),
        ("//static static", "may hold only"),
        ("/st$atic static", "may hold only"),
        ("/static sta$tic", "character nginx's configuration cannot take"),
        ("/static sta;tic", "character nginx's configuration cannot take"),
        ("/static missing", "does not exist"),
        ("/static wsgi.py", "is not a folder"),
    ],
)
def test_a_bad_static_value_is_a_problem_on_its_line_with_a_fix(tmp_path, app, value, said):
    checked = vassal(tmp_path, f"static = {value}")
    assert not checked.valid and checked.static is None
    problem = checked.problems[0]
    assert said in problem.message and problem.fix and problem.line == 4


def test_static_is_a_known_fleet_key_and_a_typo_is_not(tmp_path, app):
    assert vassal(tmp_path, "static = /static static").valid
    typo = vassal(tmp_path, "statics = /static static")
    assert "unknown [fleet] setting 'statics'" in typo.reason()


def test_without_a_chdir_a_relative_folder_is_not_checked():
    mount, problem, _ = parse_value("/static static", None)
    assert mount == StaticMount("/static", "static", None) and problem == ""


def test_no_static_line_is_no_mount(tmp_path, app):
    assert vassal(tmp_path, "health_path = /healthz").static is None
    assert static.parse([("health_path", "/x", 3)], app) == (None, [])


# ---- agreement ---------------------------------------------------------------------------------------

A, B = StaticMount("/static", "static"), StaticMount("/assets", "public")


def test_backends_that_agree_fail_none():
    assert agree("static", {"b1": A, "b2": A}, {"b1": 1, "b2": 2}) == (A, {})


def test_no_backends_agree_on_nothing():
    assert agree("static", {}, {}) == (None, {})


def test_the_value_most_backends_hold_wins_and_the_other_is_failed_with_the_reason():
    value, failed = agree("static", {"b1": A, "b2": A, "b3": B}, {"b1": 3, "b2": 2, "b3": 1}, StaticMount.describe)
    assert value == A and set(failed) == {"b3"}
    assert "'/assets public' here but '/static static' for b1, b2" in failed["b3"]
    assert "must agree" in failed["b3"]


def test_on_a_tie_the_oldest_files_value_wins_so_a_copied_in_file_fails():
    value, failed = agree("static", {"old": A, "new": B}, {"old": 1, "new": 2})
    assert value == A and set(failed) == {"new"}


def test_a_backend_without_static_disagrees_with_ones_that_have_it():
    value, failed = agree("static", {"b1": A, "b2": None}, {"b1": 1, "b2": 2})
    assert value == A and "is 'not set' here" in failed["b2"]


def test_agree_is_generic_for_other_settings():
    value, failed = agree("path", {"b1": "/blog", "b2": "/blog", "b3": "/"}, {"b1": 1, "b2": 1, "b3": 1})
    assert value == "/blog" and set(failed) == {"b3"} and "[fleet] path is '/'" in failed["b3"]


# ---- the renderer ------------------------------------------------------------------------------------


def block(mount: str = "/static", folder: str = "/srv/app/static", max_age: int = 300) -> str:
    return location(mount, Path(folder), max_age)


def test_alias_and_location_both_end_in_a_slash_against_the_off_by_slash():
    text = block()
    assert "location ^~ /static/ {" in text
    assert "alias /srv/app/static/;" in text
    assert re.search(r"location \^~ /static \{", text) is None


def test_the_bare_prefix_is_a_json_404_not_the_parent():
    text = block()
    exact = text[text.index("location = /static {") :]
    assert "return 404" in exact and "application/json" in exact


def test_no_listing_and_a_folder_request_is_a_json_404():
    text = block()
    assert "autoindex off;" in text
    folder = text[text.index("location ~ /$ {") :]
    assert "return 404" in folder.split("}")[0]
    assert "try_files $uri =404;" in text  # a folder without its slash: not a redirect that says it is there
    assert "error_page 301 = @fleet_static_404;" in text


def test_cache_control_is_the_setting_and_immutable_for_fingerprinted_names():
    text = block(max_age=120)
    assert 'add_header Cache-Control "max-age=120";' in text
    fingerprinted = text[text.index(f'location ~ "{render_static.FINGERPRINT}"') :]
    assert f'add_header Cache-Control "{IMMUTABLE}";' in fingerprinted


@pytest.mark.parametrize("name", ["app.3f9c2b.css", "main.0123456789abcdef.js", "logo.ABCDEF.svg"])
def test_fingerprinted_names_match_the_pattern(name):
    assert re.search(render_static.FINGERPRINT, name)


@pytest.mark.parametrize("name", ["style.css", "app.3f9c2.css", "app.3f9c2bz.css", "3f9c2b.css", "app.css.3f9c2b"])
def test_other_names_do_not_match_the_pattern(name):
    assert not re.search(render_static.FINGERPRINT, name)


def test_gzip_for_text_types_and_precompressed_files():
    text = block()
    assert "gzip on;" in text and "gzip_static on;" in text and "gzip_vary on;" in text
    for mime in ("text/css", "application/javascript", "image/svg+xml", "application/json", "text/plain"):
        assert mime in text.split("gzip_types", 1)[1].split(";")[0]


def test_etag_stays_on_and_symlinks_below_the_folder_are_not_followed():
    text = block()
    assert "etag on;" in text
    assert "disable_symlinks on from=/srv/app/static;" in text


def test_a_missing_file_is_answered_by_a_json_named_location():
    text = render([Mount("/static", Path("/srv/app/static"))])
    assert "error_page 404 = @fleet_static_404;" in text
    named = text[text.index("location @fleet_static_404 {") :]
    assert "default_type application/json;" in named and "return 404" in named


def test_the_types_css_and_js_are_known():
    text = block()
    assert "text/css css;" in text and "application/javascript js mjs;" in text


@pytest.mark.parametrize("mount", ["static", "/static/", "/", "/a/../b", "/a//b", "/st atic", "/$x", "/a;b"])
def test_a_prefix_that_cannot_be_written_safely_is_refused(mount):
    with pytest.raises(ValueError):
        block(mount=mount)


@pytest.mark.parametrize("folder", ["relative/static", "/srv/a b", "/srv/$x", "/srv/a;b", '/srv/a"b'])
def test_a_folder_that_cannot_be_written_safely_is_refused(folder):
    with pytest.raises(ValueError):
        block(folder=folder)


def test_render_is_sorted_so_the_file_changes_only_with_its_meaning():
    one, two = Mount("/b", Path("/x/b")), Mount("/a", Path("/x/a"))
    assert render([one, two]) == render([two, one])
    text = render([one, two])
    assert text.index("location ^~ /a/") < text.index("location ^~ /b/")
    assert text.count("location @fleet_static_404") == 1


def test_no_mounts_render_no_location():
    assert "location" not in render([])


@pytest.fixture
def public(tmp_path: Path):
    """A folder everyone may pass through (pytest's own temporary folder is private to this user)."""
    folder = Path(tempfile.mkdtemp(prefix="fleet-static-", dir="/tmp"))
    folder.chmod(0o711)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o700)
    shutil.rmtree(folder)


# As root, nginx's workers run as another user; otherwise as this one (then mode 000 keeps it out too).
WORKERS = "nobody" if os.geteuid() == 0 else None


def test_a_folder_the_workers_may_not_enter_is_reported_with_the_fix(public):
    private = public / "private"
    (private / "static").mkdir(parents=True)
    private.chmod(0)
    why = unreadable(private / "static", WORKERS)
    assert f"cannot pass through {private} (mode 0)" in why and f"chmod o+x {private}" in why


def test_an_unreadable_file_is_reported_with_the_fix(public):
    folder = public / "static"
    folder.mkdir()
    (folder / "a.css").write_text("a{}")
    (folder / "a.css").chmod(0)
    why = unreadable(folder, WORKERS)
    assert f"cannot read {folder / 'a.css'}" in why and "chmod o+r" in why


def test_a_readable_folder_has_nothing_to_report(public):
    folder = public / "static"
    folder.mkdir()
    (folder / "a.css").write_text("a{}")
    assert unreadable(folder, WORKERS) == ""


def test_the_shipped_nginx_conf_includes_the_static_folders_before_the_app():
    template = (Path(__file__).resolve().parents[2] / "nginx" / "nginx.conf").read_text()
    assert template.index("include {{run}}/nginx/static.conf;") < template.index("location / {")


def test_fleet_add_writes_the_static_line_the_others_agree_on_and_it_parses_back(tmp_path, app):
    text = vassals.new_vassal_text("backend-9", 2, StaticMount("/static", "static"))
    assert "[fleet]\nstatic = /static static\n" in text
    assert text.endswith("[uwsgi]\nprocesses = 2\n"), "[uwsgi] last: an option appended to the file is uWSGI's"
    checked = vassals.parse(tmp_path / "vassals" / "backend-9.ini", text.encode(), app_dir=app)
    assert checked.valid and checked.static == StaticMount("/static", "static", app / "static")


# ---- the control plane's observer: agreement over the vassal files --------------------------------------


def observer_for(tmp_path: Path, files: dict[str, str]) -> ClusterObserver:
    layout = Layout(tmp_path)
    layout.vassals.mkdir(exist_ok=True)
    for age, (name, text) in enumerate(files.items()):
        path = layout.vassal_file(name)
        path.write_text(text)
        os.utime(path, ns=(1_000_000_000 * (age + 1), 1_000_000_000 * (age + 1)))
    return ClusterObserver(layout, Settings(), lambda: frozenset({"processes"}))


def test_the_observer_fails_the_backend_that_disagrees_and_serves_what_the_others_agree_on(tmp_path, app):
    same = "[uwsgi]\n[fleet]\nstatic = /static static\n"
    observer = observer_for(tmp_path, {"b1": same, "b2": same, "odd": "[uwsgi]\n"})
    wanted = observer.wanted()
    assert wanted.files["b1"].problem == wanted.files["b2"].problem == ""
    assert "[fleet] static is 'not set' here but '/static static' for b1, b2" in wanted.files["odd"].problem
    assert observer.static == StaticMount("/static", "static", app / "static")


def test_a_file_with_a_problem_of_its_own_takes_no_part_in_the_agreement(tmp_path, app):
    observer = observer_for(
        tmp_path, {"b1": "[uwsgi]\n[fleet]\nstatic = /static static\n", "bad": "[uwsgi]\nnope = 1\n"}
    )
    wanted = observer.wanted()
    assert wanted.files["bad"].problem.startswith("line 2: unknown uWSGI option")
    assert observer.static is not None and observer.static.prefix == "/static"


def test_no_vassal_files_serve_no_static_folder(tmp_path, app):
    observer = observer_for(tmp_path, {})
    assert observer.wanted().files == {} and observer.static is None


@pytest.mark.parametrize(
    "app_path, prefix, url", [("/", "/static", "/static"), ("/blog", "/static", "/blog/static"), ("/a/", "/s", "/a/s")]
)
def test_a_static_prefix_is_served_under_its_apps_path(app_path, prefix, url):
    assert url_prefix(app_path, prefix) == url


@pytest.mark.parametrize("text", ["nginx's", 'a "b"', "a $b", "a \\ b"])
def test_an_error_text_that_would_break_the_nginx_return_is_refused(text):
    with pytest.raises(ValueError):
        render_static.json_error(404, text)
