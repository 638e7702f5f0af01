"""Hostile policy files: each one hung, crashed or blew up a command before it was bounded.

`CASES` maps a case name to (path inside mesh.d, file text). Texts that are large are built
when asked for, so the corpus stays small in git.
"""

from __future__ import annotations

from collections.abc import Callable

SERVICE = (
    "apiVersion: meshctl/v1alpha1\nkind: Service\nmetadata: {name: %s}\n"
    "spec:\n  versions:\n    - {name: v1, run: [app]}\n"
)


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghi"
    for prev, name in zip(names, names[1:], strict=False):
        lines.append(f"{name}: &{name} [{','.join('*' + prev for _ in range(9))}]")
    return "\n".join(lines) + "\n"


def merge_key_bomb() -> str:
    lines = ["l0: &l0 {a: 1, b: 2, c: 3}"]
    for level in range(1, 12):
        refs = ", ".join(f"*l{level - 1}" for _ in range(8))
        lines.append(f"l{level}: &l{level} {{<<: [{refs}], k{level}: {level}}}")
    return "\n".join(lines) + "\n"


def route(regex: str) -> str:
    return (
        "apiVersion: meshctl/v1alpha1\nkind: Route\nmetadata: {name: shop}\nspec:\n  service: shop\n"
        "  rules:\n    - name: re\n"
        f"      match: [{{path: {{regex: {regex!r}}}}}]\n"
        "      backends: [{version: v1}]\n    - name: default\n      backends: [{version: v1}]\n"
    ).replace("'", '"') if '"' not in regex else ""


def policy_test(url: str) -> str:
    return f"tests:\n  - name: hostile url\n    request: {{from: shop, url: '{url}'}}\n    expect: {{status: 200}}\n"


CASES: dict[str, tuple[str, Callable[[], str]]] = {
    "billion-laughs": ("bomb.yaml", billion_laughs),
    "merge-key-bomb": ("bomb.yaml", merge_key_bomb),
    "empty-documents-4mb": ("docs.yaml", lambda: "---\n" * 1_000_000),
    "empty-documents-under-size-limit": ("docs.yaml", lambda: "---\n" * 400_000),
    "million-item-list": ("list.yaml", lambda: "x: [" + "1," * 1_000_000 + "1]\n"),
    "large-list-under-size-limit": ("list.yaml", lambda: "x: [" + "1," * 600_000 + "1]\n"),
    "block-list-under-size-limit": ("list.yaml", lambda: "x:\n" + "- 1\n" * 400_000),
    "self-alias": ("alias.yaml", lambda: "a: &a [*a]\n"),
    "self-alias-mapping": ("alias.yaml", lambda: "a: &a {b: *a}\n"),
    "merge-then-own-key": ("svc.yaml", lambda: (
        "apiVersion: meshctl/v1alpha1\nkind: Service\nmetadata: {name: merged}\n"
        "spec:\n  <<: {port: 1}\n  port:\n  versions:\n    - {name: v1, run: [app]}\n")),
    "merge-non-mapping": ("svc.yaml", lambda: "a:\n  <<: 5\n  <<: [1, [2]]\n"),
    "integer-5000-digits": ("svc.yaml", lambda: (SERVICE % "big") + "  port: " + "9" * 5000 + "\n"),
    "integer-negative-digits": ("svc.yaml", lambda: (SERVICE % "neg") + "  port: -" + "9" * 5000 + "\n"),
    "hex-integer-huge": ("svc.yaml", lambda: (SERVICE % "hex") + "  port: 0x" + "f" * 5000 + "\n"),
    "float-overflow": ("svc.yaml", lambda: (SERVICE % "flt") + "  port: 1e99999\n"),
    "kind-is-a-list": ("svc.yaml", lambda: "apiVersion: meshctl/v1alpha1\nkind: [Service]\nmetadata: {name: x}\n"),
    "kind-is-a-mapping": ("svc.yaml", lambda: "apiVersion: meshctl/v1alpha1\nkind: {a: 1}\nmetadata: {name: x}\n"),
    "api-version-list": ("svc.yaml", lambda: "apiVersion: [1]\nkind: Service\nmetadata: {name: x}\n"),
    "name-is-a-list": ("svc.yaml", lambda: "apiVersion: meshctl/v1alpha1\nkind: Service\nmetadata: {name: [a]}\n"),
    "metadata-is-a-list": ("svc.yaml", lambda: "apiVersion: meshctl/v1alpha1\nkind: Service\nmetadata: [a]\n"),
    "regex-huge-repeat": ("route.yaml", lambda: route("a{99999999999}")),
    "regex-repeat-over-1000": ("route.yaml", lambda: route("/a{1001}")),
    "regex-possessive": ("route.yaml", lambda: route("/a++")),
    "regex-atomic-group": ("route.yaml", lambda: route("(?>a+)b")),
    "regex-conditional": ("route.yaml", lambda: route("(a)?(?(1)b|c)")),
    "regex-nested-quantifier": ("route.yaml", lambda: route("/(a+)+$")),
    "regex-too-large": ("route.yaml", lambda: route("((((a{100}){100}){100}){100})")),
    "deep-flow-nesting": ("deep.yaml", lambda: "x: " + "[" * 20_000 + "]" * 20_000 + "\n"),
    "deep-flow-mapping": ("deep.yaml", lambda: "x: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n"),
    "deep-block-nesting": ("deep.yaml", lambda: "".join("  " * i + "a:\n" for i in range(900)) + "  " * 900 + "1\n"),
    "complex-key": ("svc.yaml", lambda: "? [a, b]\n: 1\n"),
    "python-tag": ("svc.yaml", lambda: "x: !!python/object/apply:os.system ['true']\n"),
    "nul-bytes": ("svc.yaml", lambda: "apiVersion: meshctl/v1alpha1\x00\nkind: Service\n"),
    "control-chars-in-name": ("svc.yaml", lambda: SERVICE % '"evil\\e[31m\\u202e"'),
    "long-string": ("svc.yaml", lambda: (SERVICE % "long") + "  x: " + "a" * 1_500_000 + "\n"),
    "many-anchors": ("svc.yaml", lambda: "".join(f"k{i}: &a{i} {i}\n" for i in range(50_000))),
    "test-url-bad-ipv6": ("tests/t.yaml", lambda: policy_test("http://[::1")),
    "test-url-bad-port": ("tests/t.yaml", lambda: policy_test("http://shop:99999999/")),
    "test-url-control": ("tests/t.yaml", lambda: policy_test("http://shop/\x1b[2J")),
    "test-not-a-list": ("tests/t.yaml", lambda: "tests: {a: 1}\n"),
    "test-request-list": ("tests/t.yaml", lambda: "tests:\n  - name: x\n    request: [1]\n    expect: 1\n"),
    "test-billion-laughs": ("tests/t.yaml", billion_laughs),
    "test-header-crlf": ("tests/t.yaml", lambda: (
        "tests:\n  - name: x\n    request: {from: shop, url: 'http://shop/', headers: {a: \"b\\r\\nc\"}}\n"
        "    expect: {status: 200}\n")),
}

# Patterns Python's `re` choked on (OverflowError, exponential backtracking) that RE2 takes:
# `a{99999999999}` is a literal for RE2 (as in Envoy), `/(a+)+$` runs in linear time.
VALID = frozenset({"regex-huge-repeat", "regex-nested-quantifier"})
