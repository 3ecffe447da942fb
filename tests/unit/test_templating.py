"""The one template language: sandboxed Jinja2, StrictUndefined, one context shape, bounded cost."""

from __future__ import annotations

import pytest
from orrery.templating import (
    MAX_TEMPLATE_BYTES,
    BoardCtx,
    RepoCtx,
    ScheduleCtx,
    SessionCtx,
    TemplateContext,
    TemplateError,
    UserCtx,
    WorktreeCtx,
    ZoneCtx,
    render,
    validate,
)

WORKTREE = WorktreeCtx(
    name="feat-login",
    ref="feat/login",
    path="/srv/worktrees/app/feat-login",
    unique_id=3,
    ports=[20020, 20021, 20022],
    issue_url="https://example.com/issues/7",
    notes="fix the login",
    context={"team": "web", "weird key": "ok", "n": 2},
)
CTX = TemplateContext(
    repo=RepoCtx(slug="app", name="App", default_branch="main"),
    worktree=WORKTREE,
    board=BoardCtx(name="Main", slug="main", context={"sprint": 12}),
    zone=ZoneCtx(label="Review"),
    user=UserCtx(name="Ada", role="admin"),
)


def code_of(template: str, ctx: TemplateContext = CTX) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        render(template, ctx)
    return info.value


# --- the context shape ----------------------------------------------------------------------


def test_to_mapping_has_every_top_level_name() -> None:
    mapping = TemplateContext().to_mapping()
    assert mapping == {
        "repo": None,
        "worktree": None,
        "board": None,
        "zone": None,
        "session": None,
        "schedule": None,
        "user": None,
    }


def test_to_mapping_is_plain_builtins() -> None:
    mapping = CTX.to_mapping()
    assert mapping["worktree"]["ports"] == [20020, 20021, 20022]
    assert mapping["worktree"]["context"]["team"] == "web"
    assert mapping["worktree"]["pull_request_url"] is None
    assert mapping["repo"]["default_branch"] == "main"


# --- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("PORT={{ worktree.ports[0] }}", "PORT=20020"),
        ("{{ 9000 + worktree.unique_id }}", "9003"),
        ("{{ worktree.context.team }}/{{ worktree.context['weird key'] }}", "web/ok"),
        ("{{ repo.slug }}-{{ worktree.name }}", "app-feat-login"),
        ("{{ board.context.sprint }} {{ zone.label }} {{ user.name }}", "12 Review Ada"),
        ("{% if session %}s{% else %}no session{% endif %}", "no session"),
        ("{{ worktree.pull_request_url or 'none' }}", "none"),
        ("{{ worktree.missing | default('d') }}", "d"),
        ("{{ worktree.ports | join(',') }}", "20020,20021,20022"),
        (
            "{% for p in worktree.ports %}{{ loop.index }}:{{ p }} {% endfor %}",
            "1:20020 2:20021 3:20022 ",
        ),
        ("{{ worktree.notes | shell_quote }}", "'fix the login'"),
        ('{{ "it\'s" | shell_quote }}', "'it'\"'\"'s'"),
        ("{{ 'Feat/Login Page!' | slug }}", "feat-login-page"),
        ("{{ worktree.name | upper | replace('-', '_') }}", "FEAT_LOGIN"),
        ("<{{ '&' }}>", "<&>"),  # autoescape is off: these are shell commands, not HTML
        ("line\n", "line\n"),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert render(template, CTX) == expected


def test_render_with_session_and_schedule() -> None:
    ctx = TemplateContext(
        session=SessionCtx(title="t", context={"k": "v"}),
        schedule=ScheduleCtx(cron="0 * * * *", run_index=4),
    )
    assert render("{{ session.context.k }} {{ schedule.cron }} #{{ schedule.run_index }}", ctx) == (
        "v 0 * * * * #4"
    )


# --- undefined names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ worktree.portz }}", "worktree.portz is undefined"),
        ("{{ worktree.ports[12] }}", "worktree.ports[12] is undefined"),
        ("{{ worktree.context.nope }}", "worktree.context.nope is undefined"),
        ("{{ worktree['nope'] }}", "worktree.nope is undefined"),
        ("{{ wroktree.name }}", "wroktree is undefined"),
        ("{{ worktree.portz + 1 }}", "worktree.portz is undefined"),
    ],
)
def test_undefined_names_the_missing_variable(template: str, message: str) -> None:
    error = code_of(template)
    assert error.code == "template.undefined"
    assert error.message == message


def test_undefined_reports_the_line() -> None:
    error = code_of("a\nb\n{{ worktree.portz }}")
    assert error.line == 3


def test_reading_through_an_absent_thing_is_undefined() -> None:
    error = code_of("{{ session.title }}")
    assert error.code == "template.undefined"
    assert "title" in error.message


# --- the sandbox ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ range.__self__ }}",
        "{{ worktree.__class__ }}",
        "{{ worktree['__class__'] }}",
        "{{ '' | attr('__class__') }}",
        "{{ worktree.ports.__len__() }}",
        "{{ worktree.context.update({'a': 1}) }}",
        "{{ worktree.ports.append(1) }}",
        "{{ worktree.context.pop('team') }}",
        "{{ worktree.name.center(100000000) }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '%s'.format_map({}) }}",
    ],
)
def test_sandbox_escapes_are_unsafe(template: str) -> None:
    error = code_of(template)
    assert error.code == "template.unsafe", error


def test_a_refused_mutation_leaves_the_context_alone() -> None:
    code_of("{{ worktree.context.clear() }}")
    assert WORKTREE.context["team"] == "web"


# --- bounds ---------------------------------------------------------------------------------


def test_template_size_is_bounded() -> None:
    with pytest.raises(TemplateError) as info:
        validate("x" * (MAX_TEMPLATE_BYTES + 1))
    assert info.value.code == "template.too_large"


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 2000000 }}",
        "{{ [1] * 2000000 }}",
        "{{ 2 ** 100000 }}",
        "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
        "{% set r = range(50000) | list %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}",
        "{% for i in range(10000000) %}{% endfor %}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "{% for i in range(20000) %}{{ 'x' * 1000 }}{% endfor %}",
        "{{ ('x' * 1000000) | replace('x', 'yy') }}",
    ],
)
def test_runaway_work_and_output_are_too_large(template: str) -> None:
    error = code_of(template)
    assert error.code == "template.too_large", error


def test_output_just_under_the_bound_renders() -> None:
    assert len(render("{{ 'x' * 1000000 }}", CTX)) == 1000000


def test_runtime_errors_are_template_errors() -> None:
    assert code_of("{{ 1 / 0 }}").code == "template.runtime"
    assert code_of("{{ worktree.name + 1 }}").code == "template.runtime"


# --- validate -------------------------------------------------------------------------------


def test_validate_accepts_the_context_names_and_locals() -> None:
    validate("{{ worktree.ports[0] }} {{ repo.slug }} {{ user.name }}")
    validate("{% set x = 1 %}{% for p in worktree.ports %}{{ p + x }}{% endfor %}{{ range(3) }}")


def test_validate_reports_syntax_with_line() -> None:
    with pytest.raises(TemplateError) as info:
        validate("ok\n{% if %}")
    assert info.value.code == "template.syntax"
    assert info.value.line == 2


def test_validate_rejects_unknown_filters() -> None:
    with pytest.raises(TemplateError) as info:
        validate("{{ worktree.name | nosuchfilter }}")
    assert info.value.code == "template.syntax"


def test_validate_names_an_unknown_top_level_variable() -> None:
    with pytest.raises(TemplateError) as info:
        validate("a\n{{ custom.x }}")
    assert info.value.code == "template.undefined"
    assert info.value.message == "custom is undefined"
    assert info.value.line == 2


def test_syntax_errors_also_come_from_render() -> None:
    assert code_of("{{ worktree.name ").code == "template.syntax"
