"""`.orrery.yml` parsing and `.agor.yml` conversion: pure, text in, structs or ConfigError out."""

from __future__ import annotations

import pytest
from orrery.templating import RepoCtx, TemplateContext, WorktreeCtx, render
from orrery.worktrees.domain.agor import convert_agor_yml, handlebars_to_jinja
from orrery.worktrees.domain.config import (
    ConfigError,
    DockerConfig,
    EnvironmentConfig,
    HealthCheck,
    RepoConfig,
    parse_repo_config,
)

FULL = """
environment:
  start: "python -m http.server {{ worktree.ports[0] }} -d {{ worktree.path | shell_quote }}"
  stop: "pkill -f 'http.server {{ worktree.ports[0] }}'"
  health:
    type: http
    url: "http://127.0.0.1:{{ worktree.ports[0] }}/"
    interval_s: 2
    timeout_s: 0.5
  app_url: "http://localhost:{{ worktree.ports[0] }}"
  logs: "tail -n 100 {{ worktree.path }}/server.log"
copy: [.env, ./config//local.json]
"""

CTX = TemplateContext(
    repo=RepoCtx(slug="app", name="app", default_branch="main"),
    worktree=WorktreeCtx(
        name="feat-a",
        ref="feat-a",
        path="/w/app/feat-a",
        unique_id=2,
        ports=[20010, 20011],
        context={"offset": 7},
    ),
)


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_repo_config(text)
    return info.value


# --- good configs ---------------------------------------------------------------------------


def test_full_config() -> None:
    config = parse_repo_config(FULL)
    env = config.environment
    assert env is not None
    assert env.runner == "process"
    assert env.health == HealthCheck(
        type="http",
        url="http://127.0.0.1:{{ worktree.ports[0] }}/",
        interval_s=2,
        timeout_s=0.5,
    )
    assert env.health.start_grace_s == 3
    assert config.copy == [".env", "config/local.json"]
    assert render(env.start, CTX) == "python -m http.server 20010 -d /w/app/feat-a"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "null"])
def test_empty_files_are_an_empty_config(text: str) -> None:
    assert parse_repo_config(text) == RepoConfig()


def test_minimal_environment_defaults() -> None:
    config = parse_repo_config("environment: {start: make up}")
    assert config.environment == EnvironmentConfig(start="make up")
    assert config.environment.stop is None
    assert config.environment.health is None
    assert config.copy == []


def test_tcp_health_check() -> None:
    config = parse_repo_config(
        "environment:\n  start: x\n  health: {type: tcp, port: '{{ worktree.ports[1] }}'}\n"
    )
    assert config.environment is not None
    health = config.environment.health
    assert health is not None
    assert (health.type, health.host, health.port) == (
        "tcp",
        "127.0.0.1",
        "{{ worktree.ports[1] }}",
    )
    assert (health.interval_s, health.timeout_s) == (5, 1)


def test_docker_runner() -> None:
    config = parse_repo_config(
        """
environment:
  start: "python -m http.server $PORT"
  runner: docker
  docker:
    image: "python:3.11-slim"
    env: {APP_PORT: "{{ worktree.ports[0] }}"}
"""
    )
    assert config.environment is not None
    assert config.environment.docker == DockerConfig(
        image="python:3.11-slim", env={"APP_PORT": "{{ worktree.ports[0] }}"}
    )


# --- bad configs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "path"),
    [
        ("environment: [", "config.yaml", ""),
        ("- a\n- b\n", "config.invalid", ""),
        ("environment: {start: 1}", "config.invalid", "environment.start"),
        ("environment: {stop: x}", "config.invalid", "environment"),
        ("environment: {start: x, stat: y}", "config.invalid", "environment"),
        ("unknown: 1", "config.invalid", ""),
        ("environment: {start: ' '}", "config.invalid", "environment.start"),
        ("environment: {start: x, runner: k8s}", "config.unknown_runner", "environment.runner"),
        ("environment: {start: x, runner: docker}", "config.invalid", "environment.docker"),
        ("environment: {start: x, docker: {image: i}}", "config.invalid", "environment.docker"),
        (
            "environment: {start: x, health: {type: grpc}}",
            "config.invalid",
            "environment.health.type",
        ),
        (
            "environment: {start: x, health: {type: http}}",
            "config.invalid",
            "environment.health.url",
        ),
        (
            "environment: {start: x, health: {type: tcp}}",
            "config.invalid",
            "environment.health.port",
        ),
        (
            "environment: {start: x, health: {type: tcp, port: 70000}}",
            "config.invalid",
            "environment.health.port",
        ),
        (
            "environment: {start: x, health: {type: http, url: u, interval_s: 0}}",
            "config.invalid",
            "environment.health.interval_s",
        ),
        ("copy: [1]", "config.invalid", "copy[0]"),
        ("copy: .env", "config.invalid", "copy"),
        ("copy: [/etc/passwd]", "config.copy_path", "copy[0]"),
        ("copy: [.env, ../secrets]", "config.copy_path", "copy[1]"),
        ("copy: [a/../../b]", "config.copy_path", "copy[0]"),
        ("copy: ['C:/x']", "config.copy_path", "copy[0]"),
        ("copy: ['a\\\\b']", "config.copy_path", "copy[0]"),
        ("copy: ['.']", "config.copy_path", "copy[0]"),
        ("copy: ['']", "config.copy_path", "copy[0]"),
    ],
)
def test_bad_configs(text: str, code: str, path: str) -> None:
    error = error_of(text)
    assert (error.code, error.path_in_file) == (code, path), error


def test_yaml_errors_carry_the_line() -> None:
    error = error_of("environment:\n  start: x\n  stop: [\n")
    assert error.code == "config.yaml"
    assert error.line is not None


def test_type_errors_use_msgspec_message_with_the_path() -> None:
    error = error_of("environment: {start: x, health: {type: http, url: u, timeout_s: soon}}")
    assert error.message == "Expected `float`, got `str`"
    assert error.path_in_file == "environment.health.timeout_s"


@pytest.mark.parametrize(
    ("field", "template", "detail"),
    [
        ("start", "{% if %}", "template.syntax"),
        ("stop", "{{ wroktree.name }}", "wroktree is undefined"),
        ("app_url", "{{ custom.port }}", "custom is undefined"),
        ("logs", "{{ x | nosuchfilter }}", "template.syntax"),
    ],
)
def test_templates_are_validated_at_parse_time(field: str, template: str, detail: str) -> None:
    text = f"environment:\n  start: ok\n  {field}: '{template}'\n"
    error = error_of(text)
    assert error.code == "config.template"
    assert error.path_in_file == f"environment.{field}"
    assert detail in error.message


def test_health_and_docker_templates_are_validated() -> None:
    error = error_of("environment: {start: x, health: {type: http, url: '{{ nope }}'}}")
    assert (error.code, error.path_in_file) == ("config.template", "environment.health.url")
    error = error_of(
        "environment: {start: x, runner: docker, docker: {image: i, env: {A: '{{ nope }}'}}}"
    )
    assert (error.code, error.path_in_file) == ("config.template", "environment.docker.env.A")


def test_oversized_file() -> None:
    assert error_of("#" * 300_000).code == "config.too_large"


# --- .agor.yml ------------------------------------------------------------------------------

AGOR = """
environment:
  start: "PORT={{add 9000 worktree.unique_id}} docker compose -p agor-{{worktree.name}} up -d"
  stop: "docker compose -p agor-{{worktree.name}} down"
  health: "http://localhost:{{add 3000 worktree.unique_id}}/health"
  app: "http://localhost:{{add 5000 worktree.unique_id}}"
  logs: "docker compose -p agor-{{ worktree.name }} logs --tail=100"
"""


def test_convert_agor_yml() -> None:
    config = convert_agor_yml(AGOR)
    env = config.environment
    assert env is not None
    assert env.start == (
        "PORT={{ 9000 + worktree.unique_id }} docker compose -p agor-{{ worktree.name }} up -d"
    )
    assert env.stop == "docker compose -p agor-{{ worktree.name }} down"
    assert env.health == HealthCheck(
        type="http", url="http://localhost:{{ 3000 + worktree.unique_id }}/health"
    )
    assert env.app_url == "http://localhost:{{ 5000 + worktree.unique_id }}"
    assert env.logs == "docker compose -p agor-{{ worktree.name }} logs --tail=100"
    # Same numbers Agor would compute.
    assert render(env.start, CTX) == "PORT=9002 docker compose -p agor-feat-a up -d"
    assert render(env.app_url, CTX) == "http://localhost:5002"


@pytest.mark.parametrize(
    ("handlebars", "jinja", "rendered"),
    [
        ("{{worktree.path}}", "{{ worktree.path }}", "/w/app/feat-a"),
        ("{{{worktree.path}}}", "{{ worktree.path }}", "/w/app/feat-a"),
        ("{{ repo.slug }}", "{{ repo.slug }}", "app"),
        ("{{sub 9000 worktree.unique_id}}", "{{ 9000 - worktree.unique_id }}", "8998"),
        ("{{mul 10 worktree.unique_id}}", "{{ 10 * worktree.unique_id }}", "20"),
        (
            "{{add 3000 (mul 10 worktree.unique_id)}}",
            "{{ 3000 + (10 * worktree.unique_id) }}",
            "3020",
        ),
        ("{{custom.offset}}", "{{ worktree.context.offset }}", "7"),
        ("{{add 100 custom.offset}}", "{{ 100 + (worktree.context.offset | int) }}", "107"),
        ("{{uppercase worktree.name}}", "{{ worktree.name | upper }}", "FEAT-A"),
        ("a{{! a comment }}b{{!-- another }} --}}c", "abc", "abc"),
        ("echo ${#arr[@]} {%x%}", "echo ${{ '{' }}#arr[@]} {{ '{' }}%x%}", "echo ${#arr[@]} {%x%}"),
        ("{x{{worktree.name}}", "{x{{ worktree.name }}", "{xfeat-a"),
        ("a {", "a {{ '{' }}", "a {"),
    ],
)
def test_handlebars_to_jinja(handlebars: str, jinja: str, rendered: str) -> None:
    converted = handlebars_to_jinja(handlebars)
    assert converted == jinja
    assert render(converted, CTX) == rendered


@pytest.mark.parametrize(
    ("template", "construct"),
    [
        ("{{#if custom.debug}}--debug{{/if}}", "#if"),
        ("{{#each custom.xs}}{{this}}{{/each}}", "#each"),
        ("{{> header}}", "partial"),
        ("{{json custom}}", "'json'"),
        ("{{div worktree.unique_id 2}}", "'div'"),
        ("{{eq 1 2}}", "'eq'"),
        ("{{add 1}}", "'add'"),
        ("{{worktree.ref}}", "worktree.ref"),
        ("{{../worktree.name}}", "../worktree.name"),
        ("{{this}}", "this"),
        ("{{lowercase x k=1}}", "k="),
        ("{{~worktree.name~}}", "whitespace"),
        ("{{add 1 (mul 2 3}}", "'('"),
        ("\\{{worktree.name}}", "escaped"),
    ],
)
def test_unsupported_agor_constructs_are_named(template: str, construct: str) -> None:
    with pytest.raises(ConfigError) as info:
        convert_agor_yml(f"environment:\n  start: 'ok'\n  stop: {template!r}\n")
    assert info.value.code == "config.agor_unsupported"
    assert info.value.path_in_file == "environment.stop"
    assert construct in info.value.message


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("environment: {stop: x}", "config.invalid"),
        ("environment: {start: x, deploy: y}", "config.agor_unsupported"),
        ("environment: {start: 1}", "config.invalid"),
        ("environment: [", "config.yaml"),
        ("environment: {start: 'unclosed {{worktree.name'}", "config.invalid"),
    ],
)
def test_bad_agor_files(text: str, code: str) -> None:
    with pytest.raises(ConfigError) as info:
        convert_agor_yml(text)
    assert info.value.code == code


def test_agor_without_environment_is_empty() -> None:
    assert convert_agor_yml("") == RepoConfig()
    assert convert_agor_yml("other: 1") == RepoConfig()
