"""The rule catalogue of `inv validate-security`, and the `Finding` every scanner returns.

Rule ids are stable (tools such as GitHub code scanning key alerts on them): retire an id rather
than reuse it. Ranges: MMS0xx the scan itself, MMS1xx hardcoded secrets, MMS2xx weak values and
key material, MMS3xx risky configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The two roles a scanned file can have (see scan.py).
PLAIN, STORE = "plain", "store"
SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")


def severity_rank(severity: str) -> int:
    """Position of ``severity`` in `SEVERITIES`; raises ValueError for an unknown name."""
    return SEVERITIES.index(severity.lower())


@dataclass(frozen=True)
class Rule:
    id: str
    name: str  # kebab-case, used as the SARIF rule name
    title: str
    severity: str
    fix: str


_RULES: tuple[Rule, ...] = (
    Rule("MMS001", "unscannable-file", "A file could not be read or parsed, so it was not checked",
         "low", "fix the syntax (or encoding) of the file, then scan again"),
    # -- hardcoded secrets ---------------------------------------------------------------------
    Rule("MMS101", "hardcoded-secret-yaml", "Literal value on a secret-like key in a YAML file",
         "high", "declare the secret in the schema's `secrets:` and reference it "
                 "(env template `{{ secrets.NAME }}`, compose `${VAR}` or `env_file:`)"),
    Rule("MMS102", "hardcoded-secret-line", "Literal value on a secret-like variable in a template "
                                            "or hand-written env file",
         "high", "reference the generated secret instead: `KEY={{ secrets.NAME }}` in the template"),
    Rule("MMS103", "secret-fallback-default", "Compose interpolation gives a secret a default value",
         "high", "drop the default: use `${VAR}` or `${VAR:?VAR must be set}`"),
    Rule("MMS104", "jinja-default-on-secret", "Jinja `default(...)` on a secret",
         "high", "remove `| default(...)`: a missing secret must fail rendering, not fall back"),
    Rule("MMS105", "credentials-in-url", "URL with a literal password in a file that should hold none",
         "high", "build the URL from references (`{{ secrets.NAME }}`), never a literal password"),
    # -- weak values and key material ----------------------------------------------------------
    Rule("MMS201", "weak-secret-value", "Known weak, default or placeholder value on a secret",
         "critical", "replace it with a generated value: delete it from the secrets store and "
                     "run `inv setup-secrets`, then `inv render-env`"),
    Rule("MMS202", "default-admin-username", "Well-known default administrator user name",
         "low", "use a generated user name (schema secret with `kind: username`)"),
    Rule("MMS203", "private-key", "Private key material in a file that should hold none",
         "critical", "remove the key, rotate it, and load it from a 0600 file outside the repository"),
    Rule("MMS204", "provider-token", "Token in a known provider format (Hugging Face, GitHub, AWS, "
                                     "OpenAI, Slack) in a file that should hold none",
         "high", "revoke the token, then pass it through the secrets store and an env file"),
    Rule("MMS205", "high-entropy-string", "High-entropy string (likely a secret) in a file that "
                                          "should hold none",
         "medium", "move the value to the secrets store and reference it from the template"),
    # -- risky configuration -------------------------------------------------------------------
    Rule("MMS301", "unpinned-image", "Container image without a pinned tag (none, latest, main ...)",
         "medium", "pin a release tag (image:1.2.3) or a digest (image@sha256:...)"),
    Rule("MMS302", "privileged-container", "Container runs privileged",
         "high", "remove `privileged: true`; grant only the capabilities or devices it needs"),
    Rule("MMS303", "docker-socket-mounted", "Docker socket mounted into a container",
         "high", "do not mount docker.sock (it is root on the host); use a socket proxy with a "
                 "read-only allow-list if the service truly needs the API"),
    Rule("MMS304", "datastore-port-public", "Database or cache port published on all interfaces "
                                            "in production",
         "high", "bind it to loopback (host_ip: 127.0.0.1) or do not publish it at all"),
    Rule("MMS305", "missing-healthcheck", "Service without a healthcheck in production",
         "low", "add a healthcheck (schema `healthcheck: {template: ...}`)"),
    Rule("MMS306", "secret-file-permissions", "Secret file or directory readable by group or others",
         "high", "chmod 600 the file (700 for a directory); treat its values as exposed and rotate"),
    Rule("MMS307", "secret-file-tracked", "Secret file tracked by git",
         "critical", "`git rm --cached FILE`, add it to .gitignore, and rotate every value it held"),
)

RULES: dict[str, Rule] = {r.id: r for r in _RULES}


@dataclass(frozen=True)
class Finding:
    """One problem: which rule, where, and a message that never carries a secret value."""

    rule_id: str
    severity: str
    file: str  # display path: relative to the stack directory when inside it
    line: int | None  # 1-based; None when the finding is about the whole file
    message: str
    fix: str

    @property
    def title(self) -> str:
        return RULES[self.rule_id].title

    def sort_key(self) -> tuple[str, int, str, str]:
        return (self.file, self.line or 0, self.rule_id, self.message)

    def to_dict(self) -> dict[str, object]:
        return {"rule_id": self.rule_id, "title": self.title, "severity": self.severity,
                "file": self.file, "line": self.line, "message": self.message, "fix": self.fix}


def finding(rule_id: str, file: str, line: int | None, message: str, fix: str | None = None) -> Finding:
    """A finding with the rule's severity and (unless given a more specific one) its fix."""
    rule = RULES[rule_id]
    return Finding(rule_id, rule.severity, file, line, message, fix or rule.fix)


def at_or_above(findings: list[Finding], threshold: str) -> list[Finding]:
    rank = severity_rank(threshold)
    return [f for f in findings if severity_rank(f.severity) >= rank]


def mask(value: object) -> str:
    """What a message may show of a value: its first two characters, and only if it is long
    enough that two characters give nothing useful away."""
    text = str(value)
    if len(text) >= 8:
        return f"'{text[:2]}…'"
    return "'…'"


@dataclass
class FindingSink:
    """Findings for one file, as the scanners add them; remembers which lines already carry a secret finding so that
    the key-material rules do not report the same value twice."""

    file: str
    role: str
    findings: list[Finding] = field(default_factory=list)
    secret_lines: set[int] = field(default_factory=set)

    def add(self, rule_id: str, line: int | None, message: str, file: str | None = None) -> None:
        # One finding per rule and line: a YAML anchor merged elsewhere, or two ports in one
        # flow list, are one thing to fix.
        f = finding(rule_id, file or self.file, line, message)
        if not any((g.rule_id, g.file, g.line) == (f.rule_id, f.file, f.line) for g in self.findings):
            self.findings.append(f)
        if rule_id[3] in "12" and line is not None and (file is None or file == self.file):
            self.secret_lines.add(line)
