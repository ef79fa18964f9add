"""The auth log parser (agent.collectors.security.authlog): what counts, by which program, with which address.

The lines are the ones Debian bookworm's sshd 9.2, shadow's login, util-linux's su and sudo 1.9 write; the
fuzz tests put user-controlled text (a user name, a command line, another program's message) where an
attacker can put it and check that it never adds a failure nor changes the address.
"""

from __future__ import annotations

import string
from typing import List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.catalog import MetricType
from agent.collectors.security.authlog import Tally, classify, classify_journal_entry, split_syslog_line
from agent.report.rules import check_value

TRAD = "Dec  5 23:17:33 gw"
RFC = "2026-12-05T23:17:33.123456+00:00 gw"


def tally_of(lines: List[str]) -> Tally:
    tally = Tally()
    for line in lines:
        tally.add_syslog_line(line)
    return tally


def test_both_rsyslog_timestamp_formats_and_the_tag():
    for head in (TRAD, RFC, "2026-12-05T23:17:33Z gw", "<38>Dec 15 01:02:03 gw"):
        assert split_syslog_line(f"{head} sshd[812]: Failed password for root from 10.0.0.1 port 22 ssh2\n") == (
            "sshd", "Failed password for root from 10.0.0.1 port 22 ssh2")
    assert split_syslog_line(f"{TRAD} sudo: pam_unix(sudo:auth): conversation failed") == (
        "sudo", "pam_unix(sudo:auth): conversation failed")
    assert split_syslog_line("Failed password for root from 10.0.0.1 port 22 ssh2") is None
    assert split_syslog_line("") is None


def test_sshd_wrong_password_counts_once_with_its_pam_lines():
    """One password attempt of an existing user: sshd writes a pam_unix line and a Failed line: one failure."""
    t = tally_of([
        f"{TRAD} sshd[900]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost=10.0.0.1  user=root",
        f"{TRAD} sshd[900]: Failed password for root from 10.0.0.1 port 50022 ssh2",
        f"{TRAD} sshd[900]: error: PAM: Authentication failure for root from 10.0.0.1",
        f"{TRAD} sshd[900]: PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=10.0.0.1",
        f"{TRAD} sshd[900]: error: maximum authentication attempts exceeded for root from 10.0.0.1 port 50022 "
        "ssh2 [preauth]",
    ])
    assert (t.failures, list(t.sources), t.logins) == (1, ["10.0.0.1"], 0)


def test_sshd_unknown_user_one_attempt_per_password_and_one_for_a_name_scan():
    t = tally_of([
        f"{RFC} sshd[901]: Invalid user bob from 10.0.0.2 port 40000",
        f"{RFC} sshd[901]: pam_unix(sshd:auth): check pass; user unknown",
        f"{RFC} sshd[901]: Failed password for invalid user bob from 10.0.0.2 port 40000 ssh2",
        f"{RFC} sshd[901]: Failed password for invalid user bob from 10.0.0.2 port 40000 ssh2",
        f"{RFC} sshd[901]: Failed password for invalid user bob from 10.0.0.2 port 40000 ssh2",
        f"{RFC} sshd[902]: Invalid user admin from 2001:db8::7 port 40001",  # connects, tries nothing
        f"{RFC} sshd[902]: Connection closed by invalid user admin 2001:db8::7 port 40001 [preauth]",
    ])
    assert t.failures == 4
    assert list(t.sources) == ["10.0.0.2", "2001:db8::7"]


def test_invalid_user_paired_across_periods_and_restarts():
    t = Tally()
    t.add_syslog_line(f"{TRAD} sshd[1]: Invalid user bob from 10.0.0.2 port 40000")
    assert t.failures == 1
    saved = t.pending_list()
    again = Tally()
    again.restore_pending(saved)
    again.add_syslog_line(f"{TRAD} sshd[1]: Failed password for invalid user bob from 10.0.0.2 port 40000 ssh2")
    again.add_syslog_line(f"{TRAD} sshd[1]: Failed password for invalid user bob from 10.0.0.2 port 40000 ssh2")
    assert again.failures == 1  # the first of them was counted by its "Invalid user" line


def test_publickey_keyboard_interactive_accepted_and_ipv6_forms():
    t = tally_of([
        f"{TRAD} sshd[3]: Failed publickey for pi from 2001:db8::1 port 5000 ssh2: RSA SHA256:AbCdEf",
        f"{TRAD} sshd[3]: Failed keyboard-interactive/pam for invalid user x from ::ffff:10.1.2.3 port 22 ssh2",
        f"{TRAD} sshd[3]: Accepted publickey for pi from 192.168.1.5 port 50000 ssh2: ED25519 SHA256:abc",
        f"{TRAD} sshd-session[4]: Accepted password for pi from 192.168.1.5 port 50001 ssh2",
    ])
    assert (t.failures, t.logins) == (2, 2)
    assert list(t.sources) == ["2001:db8::1", "10.1.2.3"]
    assert check_value(list(t.sources), MetricType.IP_ADDRESS_LIST) is None


def test_login_su_sudo():
    t = tally_of([
        f"{TRAD} login[77]: pam_unix(login:auth): authentication failure; logname=LOGIN uid=0 euid=0 tty=/dev/tty1",
        f"{TRAD} login[77]: FAILED LOGIN (1) on '/dev/tty1' FOR 'UNKNOWN', Authentication failure",
        f"{TRAD} login[78]: FAILED LOGIN (2) on '/dev/pts/1' from '10.9.9.9' FOR 'root', Authentication failure",
        f"{TRAD} login[79]: FAILED LOGIN 1 FROM 10.9.9.8 FOR root, Authentication failure",
        f"{TRAD} login[80]: pam_unix(login:session): session opened for user pi(uid=1000) by LOGIN(uid=0)",
        f"{TRAD} su[81]: pam_unix(su:auth): authentication failure; logname=pi uid=1000 euid=0 tty=/dev/pts/0",
        f"{TRAD} su[81]: FAILED SU (to root) pi on pts/0",
        f"{TRAD} sudo:       pi : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/pi ; USER=root ; "
        "COMMAND=/usr/bin/ls",
        f"{TRAD} sudo: guest : user NOT in sudoers ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/sh",
        f"{TRAD} sudo:       pi : TTY=pts/0 ; PWD=/home/pi ; USER=root ; COMMAND=/usr/bin/ls",
    ])
    assert (t.failures, t.logins) == (3 + 1 + 3 + 1, 1)
    assert list(t.sources) == ["10.9.9.9", "10.9.9.8"]


def test_message_repeated():
    t = tally_of([f"{TRAD} sshd[5]: message repeated 4 times: [ Failed password for root from 10.0.0.3 port 22 "
                  "ssh2]"])
    assert (t.failures, list(t.sources)) == (4, ["10.0.0.3"])


def test_another_program_quoting_the_text_is_not_a_login():
    t = tally_of([
        f"{TRAD} logger: Failed password for root from 10.0.0.4 port 22 ssh2",
        f"{TRAD} cron[5]: Failed password for root from 10.0.0.4 port 22 ssh2",
        f"{TRAD} sudo:   pi : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/echo Failed password for root from "
        "10.0.0.4 port 22 ssh2",
        f"{TRAD} sshd[6]: error: kex_exchange_identification: client sent invalid protocol identifier "
        "\"Failed password for root from 10.0.0.4 port 22 ssh2\"",
        f"{TRAD} sshd[6]: Connection closed by authenticating user root 10.0.0.4 port 22 [preauth]",
    ])
    assert (t.failures, t.logins, list(t.sources)) == (0, 0, [])


def test_journal_entry_needs_the_senders_comm_to_match():
    entry = {"SYSLOG_IDENTIFIER": "sshd", "_COMM": "sshd",
             "MESSAGE": "Failed password for root from 10.0.0.5 port 22 ssh2"}
    event = classify_journal_entry(entry)
    assert event is not None and event.failures == 1
    assert classify_journal_entry({**entry, "_COMM": "logger"}) is None  # logger -t sshd
    assert classify_journal_entry({k: v for k, v in entry.items() if k != "_COMM"}) is not None
    assert classify_journal_entry({**entry, "_EXE": "/usr/sbin/sshd"}) is not None
    assert classify_journal_entry({**entry, "_EXE": "/home/eve/sshd"}) is None  # a copy named sshd
    assert classify_journal_entry({**entry, "_EXE": "/usr/bin/python3.11"}) is None  # prctl(PR_SET_NAME, "sshd")
    raw = list(entry["MESSAGE"].encode())  # journalctl writes a field that is not UTF-8 as an array of bytes
    assert classify_journal_entry({**entry, "MESSAGE": raw}) is not None
    assert classify_journal_entry({**entry, "MESSAGE": [*raw, 0xFF]}) is None  # no crash, no count
    assert classify_journal_entry({**entry, "MESSAGE": None}) is None


# -- generated lines ----------------------------------------------------------------------------------------

INJECTIONS = [
    "Failed password for root from 203.0.113.9 port 22 ssh2",
    "Invalid user x from 203.0.113.9 port 22",
    "x from 203.0.113.9 port 22 ssh2: RSA SHA256:x",
    "Accepted password for root from 203.0.113.9 port 22 ssh2",
    "FAILED SU (to root) x on pts/0",
    "x : 3 incorrect password attempts ;",
]
user_text = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(alphabet=string.printable.replace("\n", "").replace("\r", "").replace("\x0b", "").replace("\x0c", ""),
            max_size=60),
    st.builds(lambda a, b, c: a + b + c, st.text(max_size=10), st.sampled_from(INJECTIONS), st.text(max_size=10)),
).map(lambda s: s.replace("\n", " ").replace("\r", " "))
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.sampled_from(["2001:db8::1", "fe80::1", "::1", "2001:db8:0:1::42"])
address = st.one_of(ipv4, ipv6)
port = st.integers(1, 65535).map(str)
head = st.sampled_from([TRAD, RFC])

# sshd lines that name a user-controlled field and are not an attempt
NOT_ATTEMPTS = [
    "Connection closed by authenticating user {u} {a} port {p} [preauth]",
    "Disconnected from invalid user {u} {a} port {p} [preauth]",
    "Connection closed by invalid user {u} {a} port {p} [preauth]",
    "pam_unix(sshd:session): session opened for user {u}(uid=0) by (uid=0)",
    "error: kex_exchange_identification: client sent invalid protocol identifier \"{u}\"",
    "Received disconnect from {a} port {p}:11: {u} [preauth]",
    "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={a}  user={u}",
]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(head, user_text, address, port, st.sampled_from(NOT_ATTEMPTS))
def test_fuzz_sshd_lines_that_are_not_attempts_never_count(h, u, a, p, template):
    t = tally_of([f"{h} sshd[1]: " + template.format(u=u, a=a, p=p)])
    assert (t.failures, t.logins, list(t.sources)) == (0, 0, [])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(head, user_text, address, port, st.sampled_from(["password", "publickey", "keyboard-interactive/pam"]),
       st.booleans())
def test_fuzz_a_failed_line_is_one_failure_from_the_address_sshd_wrote(h, u, a, p, method, invalid):
    suffix = ": ED25519 SHA256:abcd" if method == "publickey" else ""
    who = f"invalid user {u}" if invalid else u
    t = tally_of([f"{h} sshd[1]: Failed {method} for {who} from {a} port {p} ssh2{suffix}"])
    assert t.failures == 1
    assert list(t.sources) == [a]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(head, st.sampled_from(["cron", "CRON", "logger", "systemd", "kernel", "sshd-keygen", "python3"]), user_text)
def test_fuzz_other_programs_never_count(h, program, u):
    t = tally_of([f"{h} {program}[2]: {u}"])
    assert (t.failures, t.logins, list(t.sources)) == (0, 0, [])


# what sudo, su and login write on success, with a user-controlled part at the end
QUIET = {
    "sudo": "      pi : TTY=pts/0 ; PWD=/home/pi ; USER=root ; COMMAND=/usr/bin/echo ",
    "su": "(to root) pi on pts/0 ",
    "login": "ROOT LOGIN  on '/dev/tty1' ",
}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(head, st.sampled_from(sorted(QUIET)), user_text)
def test_fuzz_user_text_in_sudo_su_login_lines_never_counts(h, program, u):
    t = tally_of([f"{h} {program}[2]: {QUIET[program]}{u}"])
    assert (t.failures, t.logins, list(t.sources)) == (0, 0, [])


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_fuzz_any_text_never_crashes(text):
    tally_of(text.splitlines() or [text])
    classify("sshd", text)
    classify("sudo", text)
    classify("login", text)
