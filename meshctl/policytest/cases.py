"""Policy test files (`<policy dir>/tests/*.yaml`) -> test cases, and problems with positions.

A file holds one mapping with a `tests` list; each test names a request and what must happen:

    tests:
      - name: jason sees reviews v2
        request: {from: frontend, method: GET, url: http://reviews/r/1, headers: {end-user: jason}}
        expect: {rule: beta-testers, backend: reviews/v2, status: null, access: allow}

Problems in a file (bad YAML, unknown keys, wrong types) are Diagnostics with file:line:column,
like validation problems, so a malformed test never turns into a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshctl.model.values import parse_duration_ms
from meshctl.sources.worktree import display_path
from meshctl.validate.diagnostics import Diagnostic, at, at_position
from meshctl.yamlio import Document, Position, YamlError, load_documents

TEST_FILE_PROBLEM = "TEST001"
UNSET: Any = object()  # an expectation the test does not state (null is a stated value)

_REQUEST_KEYS = {"from", "method", "url", "headers"}
_EXPECT_KEYS = {
    "upstream",
    "rule",
    "backend",
    "split",
    "status",
    "access",
    "flags",
    "timeout",
    "retries",
    "location",
    "destination",
}
_CASE_KEYS = {"name", "request", "expect"}


@dataclass(frozen=True)
class Expect:
    rule: Any = UNSET  # str | None
    backend: Any = UNSET  # "service/version" | "service" | "version"
    split: Any = UNSET  # dict[str, float] (percent)
    status: Any = UNSET  # int | None (None: forwarded)
    access: Any = UNSET  # "allow" | "deny"
    flags: Any = UNSET  # list[str]
    timeout_ms: Any = UNSET  # int | None
    retries: Any = UNSET  # int (attempts)
    location: Any = UNSET  # str
    upstream: Any = UNSET  # str: the path (and query) the backend receives, after rewrites
    destination: Any = UNSET  # str


@dataclass(frozen=True)
class Case:
    name: str
    file: str
    line: int
    source: str
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    expect: Expect = Expect()


def find_test_files(policy_dir: Path) -> list[Path]:
    tests_dir = policy_dir / "tests"
    if not tests_dir.is_dir():
        return []
    return sorted(
        p for p in tests_dir.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
    )


def load_test_files(paths: list[Path]) -> tuple[list[Case], list[Diagnostic]]:
    cases: list[Case] = []
    problems: list[Diagnostic] = []
    for path in paths:
        name = display_path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(at_position(name, Position(1, 1), TEST_FILE_PROBLEM, f"cannot read test file: {exc}"))
            continue
        file_cases, file_problems = parse_test_file(name, text)
        cases += file_cases
        problems += file_problems
    return cases, problems


def parse_test_file(name: str, text: str) -> tuple[list[Case], list[Diagnostic]]:
    loaded = load_documents(name, text)
    if isinstance(loaded, YamlError):
        return [], [at_position(name, loaded.position, TEST_FILE_PROBLEM, loaded.message)]
    cases: list[Case] = []
    problems: list[Diagnostic] = []
    for doc in loaded:
        if doc.data is None:
            continue
        _Parser(doc, cases, problems).parse()
    return cases, problems


class _Parser:
    """Reads one document; every problem is recorded with its position, parsing goes on."""

    def __init__(self, doc: Document, cases: list[Case], problems: list[Diagnostic]) -> None:
        self.doc, self.cases, self.problems = doc, cases, problems

    def problem(self, path: tuple[str | int, ...], message: str, *, key: bool = False) -> None:
        self.problems.append(at(self.doc, path, TEST_FILE_PROBLEM, message, key=key))

    def parse(self) -> None:
        data = self.doc.data
        if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
            self.problem((), "a policy test file is a mapping with a list under `tests`")
            return
        for key in data:
            if key != "tests":
                self.problem((key,), f"unknown key {key!r} (expected `tests`)", key=True)
        for index, raw in enumerate(data["tests"]):
            case = self.case(("tests", index), raw)
            if case is not None:
                self.cases.append(case)

    def unknown_keys(self, path: tuple[str | int, ...], raw: dict[str, Any], known: set[str]) -> bool:
        bad = [k for k in raw if k not in known]
        for key in bad:
            self.problem((*path, key), f"unknown key {key!r} (expected one of {', '.join(sorted(known))})", key=True)
        return bool(bad)

    def string(self, path: tuple[str | int, ...], value: Any, what: str) -> str | None:
        if not isinstance(value, str) or not value:
            self.problem(path, f"{what} must be a non-empty string")
            return None
        return value

    def case(self, path: tuple[str | int, ...], raw: Any) -> Case | None:
        if not isinstance(raw, dict):
            self.problem(path, "a test is a mapping with `name`, `request` and `expect`")
            return None
        bad = self.unknown_keys(path, raw, _CASE_KEYS)
        line = self.doc.position(path).line
        name = raw.get("name", f"{self.doc.file}:{line}")
        if not isinstance(name, str):
            self.problem((*path, "name"), "name must be a string")
            bad = True
        request = raw.get("request")
        if not isinstance(request, dict):
            self.problem(
                path if request is None else (*path, "request"), "`request` must be a mapping with `from` and `url`"
            )
            return None
        bad |= self.unknown_keys((*path, "request"), request, _REQUEST_KEYS)
        rpath = (*path, "request")
        source = self.string((*rpath, "from"), request.get("from"), "request.from")
        url = self.string((*rpath, "url"), request.get("url"), "request.url")
        method = self.string((*rpath, "method"), request.get("method", "GET"), "request.method")
        headers = request.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in headers.values()
        ):
            self.problem((*rpath, "headers"), "request.headers must map names to strings")
            headers = None
        expect = self.expect((*path, "expect"), raw.get("expect"))
        if bad or None in (source, url, method, headers, expect):
            return None
        assert source and url and method and headers is not None and expect is not None
        return Case(
            name=name,
            file=self.doc.file,
            line=line,
            source=source,
            method=method.upper(),
            url=url,
            headers={str(k).lower(): str(v) for k, v in headers.items()},
            expect=expect,
        )

    def expect(self, path: tuple[str | int, ...], raw: Any) -> Expect | None:
        if not isinstance(raw, dict) or not raw:
            self.problem(
                path, f"`expect` must be a mapping with at least one expectation ({', '.join(sorted(_EXPECT_KEYS))})"
            )
            return None
        if self.unknown_keys(path, raw, _EXPECT_KEYS):
            return None
        values: dict[str, Any] = {}
        ok = True

        def check(key: str, valid: bool, message: str) -> None:
            nonlocal ok
            if key in raw and not valid:
                self.problem((*path, key), message)
                ok = False

        rule, status, access = raw.get("rule"), raw.get("status"), raw.get("access")
        check("rule", rule is None or isinstance(rule, str), "rule must be a rule name or null")
        check("backend", isinstance(raw.get("backend"), str), "backend must be service/version")
        check("destination", isinstance(raw.get("destination"), str), "destination: a service")
        check("location", isinstance(raw.get("location"), str), "location must be a URL")
        check(
            "upstream",
            isinstance(raw.get("upstream"), str) and raw.get("upstream", "").startswith("/"),
            "upstream must be the path the backend receives, e.g. /api/items",
        )
        check(
            "status",
            status is None or (isinstance(status, int) and 100 <= status <= 599 and not isinstance(status, bool)),
            "status must be an HTTP status, or null for a forwarded request",
        )
        check("access", access in ("allow", "deny"), "access must be allow or deny")
        flags = raw.get("flags")
        check(
            "flags",
            isinstance(flags, list) and all(isinstance(f, str) for f in flags),
            "flags must be a list like [NR] or [RBAC]",
        )
        retries = raw.get("retries")
        check(
            "retries",
            isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0,
            "retries must be the number of retry attempts",
        )
        split = raw.get("split")
        check(
            "split",
            isinstance(split, dict)
            and bool(split)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in split.values()),
            "split must map backends (service/version) to percentages",
        )
        if "timeout" in raw:
            try:
                timeout = raw["timeout"]
                values["timeout_ms"] = None if timeout is None else parse_duration_ms(timeout)
            except ValueError as exc:
                self.problem((*path, "timeout"), str(exc))
                ok = False
        for key in _EXPECT_KEYS - {"timeout"}:
            if key in raw:
                values[key] = raw[key]
        return Expect(**values) if ok else None
