"""The ``accounts`` collector: accounts with user id 0 and accounts with a login shell, from ``/etc/passwd``."""

from __future__ import annotations

import os
from functools import partial
from typing import Any, FrozenSet, List, Mapping, Optional, Tuple

from agent.catalog import BUILTIN_METRICS, BuiltinMetric
from agent.collectors.contract import BuildContext, CollectorSpec
from agent.collectors.metric_names import describes_of, emits_of, metric_names_option, selected
from agent.errors import CollectorError
from agent.report.model import Sample
from agent.schema import PathStr

METRICS: Mapping[str, BuiltinMetric] = BUILTIN_METRICS["accounts"]
NO_LOGIN = frozenset({"nologin", "false"})  # used when there is no shells file


def parse_passwd(text: str) -> Tuple[Tuple[str, int, str], ...]:
    """(name, uid, shell) of each account line of a passwd(5) text; comments, NIS ``+``/``-`` lines and lines
    without seven fields or with a uid that is not a number are left out (pure)."""
    out = []
    for line in text.split("\n"):
        fields = line.split(":")
        if len(fields) != 7 or not fields[0] or fields[0][0] in "#+-":
            continue
        try:
            uid = int(fields[2])
        except ValueError:
            continue
        out.append((fields[0], uid, fields[6].strip()))
    return tuple(out)


def parse_shells(text: str) -> FrozenSet[str]:
    """The shells of a shells(5) text: one absolute path per line, ``#`` comments (pure)."""
    return frozenset(s for s in (line.split("#", 1)[0].strip() for line in text.split("\n")) if s.startswith("/"))


def is_login_shell(shell: str, shells: Optional[FrozenSet[str]]) -> bool:
    """An empty shell is /bin/sh (passwd(5)); otherwise it must be in /etc/shells, or, without that file, not be
    a nologin or false program."""
    if not shell:
        return True
    if shells is not None:
        return shell in shells
    return os.path.basename(shell) not in NO_LOGIN


def accounts(passwd: str, shells: Optional[str]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(uid 0 accounts, login accounts), each sorted and unique (pure)."""
    entries = parse_passwd(passwd)
    allowed = parse_shells(shells) if shells is not None else None
    uid0 = sorted({name for name, uid, _ in entries if uid == 0})
    login = sorted({name for name, _, shell in entries if is_login_shell(shell, allowed)})
    return tuple(uid0), tuple(login)


def _read(path: str, missing_ok: bool) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        if missing_ok:
            return None
        raise CollectorError(f"{path}: no such file") from None
    except OSError as exc:
        raise CollectorError(f"cannot read {path}: {exc.strerror or exc}") from None


class AccountsCollector:
    def __init__(self, name: str, *, passwd: str, shells: str, metrics: Mapping[str, str]) -> None:
        self.name = name
        self._passwd = passwd
        self._shells = shells
        self._metrics = dict(metrics)

    def collect(self) -> List[Sample]:
        uid0, login = accounts(_read(self._passwd, False) or "", _read(self._shells, True))
        values = {"uid0_accounts": uid0, "login_accounts": login}
        return [Sample(name, values[builtin]) for builtin, name in self._metrics.items()]


def _reads(options: Mapping[str, Any]) -> Tuple[str, ...]:
    return (options["passwd"], options["shells"])


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> AccountsCollector:
    return AccountsCollector(ctx.name, passwd=options["passwd"], shells=options["shells"],
                             metrics=selected(options, METRICS))


DOC = """\
`uid0_accounts` names every account of `/etc/passwd` with user id 0: on a healthy system only `root`, so a
second one (a backdoor `toor`, a renamed copy) stands out. `login_accounts` names the accounts whose shell is
a login shell: listed in `/etc/shells` (what `chsh` and `pam_shells` accept), or empty (passwd(5): `/bin/sh`);
`/usr/sbin/nologin` and `/bin/false` are not. Without `/etc/shells`, every shell but `nologin` and `false`
counts. Both lists are sorted. Accounts from other NSS sources (LDAP, systemd-homed) are not read.
`/etc/passwd` and `/etc/shells` are readable by every user, so the service needs nothing more.

Detect's `in-set` lists what is allowed ([BEHAVIORS.md](BEHAVIORS.md)): one account outside it is a violation.

```yaml
behaviors:
  - name: only-root-is-uid-0
    metric: uid0_accounts
    criteria: {comparisonOperator: in-set, value: {strings: [root]}}
  - name: known-login-accounts
    metric: login_accounts
    criteria: {comparisonOperator: in-set, value: {strings: [pi, root]}}
```
"""

SAMPLE = """\
collectors:
  - type: accounts
custom_metrics:
  uid0_accounts: string-list
  login_accounts: string-list
"""


SPEC = CollectorSpec(
    type="accounts",
    doc=DOC,
    sample=SAMPLE,
    summary="Privileged and login accounts of /etc/passwd: uid0_accounts (string-list) and login_accounts "
    "(string-list).",
    options={
        "passwd": PathStr(doc="The passwd(5) file.", default="/etc/passwd", pattern=r"/.*",
                          pattern_hint="must be an absolute path"),
        "shells": PathStr(doc="The shells(5) file listing the login shells.", default="/etc/shells",
                          pattern=r"/.*", pattern_hint="must be an absolute path"),
        "metrics": metric_names_option(METRICS),
    },
    build=_build,
    emits=partial(emits_of, metrics=METRICS),
    describes=partial(describes_of, metrics=METRICS),
    reads=_reads,
    example={},
    example_enabled=False,
)
