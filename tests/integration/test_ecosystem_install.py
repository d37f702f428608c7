"""`meson install`: every file in its conventional place, the man page renders,
bash completion completes, and the systemd user unit verifies and does what it
says (mounts its instance's path, survives a crash, unmounts when stopped)."""

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from ecosystem_lib import (check_man_page, in_namespace, meson_install, meson_project_version,
                           render_man, require_unshare, rmtree_unless_mounted, scratch_dir,
                           table_rows)
from mcpfs_testlib import DEFAULT_KEY, REPO, Mount, reply_for, run, tool_env


@pytest.fixture(scope="module")
def installed(mcpfs_bin):
    """(destdir, prefix): the build of the binary under test, installed with
    --destdir; prefix is where the files are under destdir."""
    d = scratch_dir("mcpfs-install-")
    try:
        prefix = meson_install(mcpfs_bin, d / "dest")
        yield d / "dest", prefix
    finally:
        rmtree_unless_mounted(d)


def real_prefix(installed):
    destdir, prefix = installed
    return "/" + str(prefix.relative_to(destdir))


def test_every_file_in_its_place(installed):
    _, p = installed
    executables = ["bin/mcpfs", "bin/mcpfs-journal-dump", "bin/mcpfs-ask", "bin/mcpfs-chat",
                   "share/doc/mcpfs/examples/ask.sh", "share/doc/mcpfs/examples/summarize.sh",
                   "share/doc/mcpfs/examples/history-jq.sh",
                   "share/doc/mcpfs/examples/edit-system.sh"]
    files = ["share/man/man1/mcpfs.1", "share/man/man1/mcpfs-ask.1",
             "share/man/man1/mcpfs-chat.1", "share/bash-completion/completions/mcpfs",
             "share/doc/mcpfs/interface.md", "share/doc/mcpfs/style.md",
             "lib/systemd/user/mcpfs@.service",
             "share/doc/mcpfs/README.md", "share/doc/mcpfs/SECURITY.md",
             "share/doc/mcpfs/CHANGELOG.md", "share/doc/mcpfs/HACKING.md",
             "share/doc/mcpfs/http-api.md", "share/doc/mcpfs/design/journal.md",
             "share/doc/mcpfs/examples/http/client.py"]
    for f in executables + files:
        assert (p / f).is_file(), "%s was not installed" % f
    for f in executables:
        assert os.access(p / f, os.X_OK), "%s is not executable" % f
    assert (p / "share/doc/mcpfs/README.md").read_bytes() == (REPO / "README.md").read_bytes()
    # the price table built into mcpfs, installed for reading and copying (--prices)
    assert (p / "share/mcpfs/prices.tsv").read_bytes() == (REPO / "data/prices.tsv").read_bytes()
    r = run([p / "bin/mcpfs", "--version"])
    assert r.rc == 0 and r.out.strip() == "mcpfs " + meson_project_version(), r
    r = run([p / "bin/mcpfs-journal-dump"])
    assert r.rc != 0 and "usage" in (r.out + r.err).lower(), r
    for cmd, example in (("mcpfs-ask", "ask.sh"), ("mcpfs-chat", "chat.sh")):
        assert (p / "bin" / cmd).read_bytes() == (REPO / "examples" / example).read_bytes()


def test_ask_and_chat_commands(installed, workdir, fake):
    """mcpfs-ask and mcpfs-chat as installed: their man pages are found, they
    refuse a plain directory, and they talk over a real mount."""
    _, p = installed
    env = dict(os.environ, MANPATH=str(p / "share/man"))
    for cmd in ("mcpfs-ask", "mcpfs-chat"):
        r = run(["man", "-w", cmd], env=env)
        assert r.rc == 0 and r.out.strip() == str(p / "share/man/man1" / (cmd + ".1")), r
        text = render_man(p / "share/man/man1" / (cmd + ".1"))
        assert re.search(r"^NAME\n +%s - " % cmd, text, re.M), text[:300]
    plain = workdir / "plain"
    plain.mkdir()
    tenv = tool_env(workdir, {"MCPFS_MOUNT": str(plain)})
    r = run([p / "bin/mcpfs-ask", "hello"], env=tenv)
    assert r.rc == 1 and r.err == ("mcpfs-ask: '%s' is not an mcpfs mount (mount one there, "
                                   "or set MCPFS_MOUNT)\n" % plain), r
    r = run([p / "bin/mcpfs-chat"], env=tenv, input="hello\n")
    assert r.rc == 1 and r.err.startswith("mcpfs-chat: '%s' is not an mcpfs mount" % plain), r
    assert os.listdir(plain) == []
    m = Mount(p / "bin/mcpfs", fake.base_url, workdir / "m")
    try:
        m.start()
        tenv["MCPFS_MOUNT"] = str(m.path)
        r = run([p / "bin/mcpfs-ask", "installed", "question"], env=tenv)
        assert r.rc == 0 and r.out == reply_for("installed question") + "\n", r
        r = run([p / "bin/mcpfs-chat", "c"], env=tenv, input="from chat\n")
        assert r.rc == 0 and reply_for("from chat") in r.out, r
        assert m.stop() == 0
    finally:
        m.cleanup()
    assert not m.problems(), m.problems()


def test_man_page_renders_and_lists_the_table(installed, mcpfs_bin):
    _, p = installed
    env = dict(os.environ, MANPATH=str(p / "share/man"))
    r = run(["man", "-w", "mcpfs"], env=env)
    assert r.rc == 0 and r.out.strip() == str(p / "share/man/man1/mcpfs.1"), r
    text = render_man(p / "share/man/man1/mcpfs.1")
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "CONFIGURATION KEYS",
                    "ENVIRONMENT", "FSTAB AND MOUNT", "SYSTEMD", "LOGGING", "EXIT STATUS",
                    "SEE ALSO"):
        assert re.search(r"^%s$" % section, text, re.M), "no section %s" % section
    assert "mcpfs - talk to Claude through the file system" in text
    assert "mcpfs " + meson_project_version() in text  # the footer
    opts, keys = table_rows(mcpfs_bin)
    check_man_page(text, opts, keys)


def complete(p, words, tmp, loader=False):
    """COMPREPLY for the command line `words` (the last one being completed),
    with the installed completion sourced directly, or found by
    bash-completion's loader through XDG_DATA_DIRS."""
    if loader:
        setup = ("source /usr/share/bash-completion/bash_completion\n"
                 "_completion_loader mcpfs\n")
    else:
        setup = "source %s\n" % shlex.quote(str(p / "share/bash-completion/completions/mcpfs"))
    script = setup + (
        "complete -p mcpfs\n"
        "COMP_WORDS=(%s)\nCOMP_CWORD=%d\nCOMP_LINE=\"${COMP_WORDS[*]}\"\n"
        "_mcpfs mcpfs \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\"\n"
        "printf '%%s\\n' \"${COMPREPLY[@]}\"\n"
        % (" ".join(shlex.quote(w) for w in words), len(words) - 1))
    env = dict(os.environ, XDG_DATA_DIRS=str(p / "share"), HOME=str(tmp))
    r = run(["bash", "--norc", "--noprofile", "-c", script], env=env, cwd=str(tmp))
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert lines[0] == "complete -F _mcpfs mcpfs", r
    return sorted(ln for ln in lines[1:] if ln)


def test_bash_completion(installed, mcpfs_bin, workdir):
    _, p = installed
    (workdir / "state-a").mkdir()
    (workdir / "key.txt").write_text("x")
    opts, _ = table_rows(mcpfs_bin)
    flags = set()
    for usage, *_ in opts:
        flags.add(usage.split("[")[0].split("=")[0] + ("=" if "=" in usage else ""))
    # Every option of the table, and nothing else.
    got = complete(p, ["mcpfs", "-"], workdir)
    assert set(got) - {"-o", "--http"} == flags - {"--http"} and "-o" in got, got
    assert complete(p, ["mcpfs", "--st"], workdir) == ["--state-dir=", "--store="]
    assert complete(p, ["mcpfs", "--sta"], workdir) == ["--state-dir="]
    assert complete(p, ["mcpfs", "--state-dir=st"], workdir) == ["--state-dir=state-a"]
    assert complete(p, ["mcpfs", "--api-key-file=ke"], workdir) == ["--api-key-file=key.txt"]
    assert complete(p, ["mcpfs", "-o", "mo"], workdir) == ["model="]
    assert complete(p, ["mcpfs", "-o", "allow_other,api"], workdir) == \
        ["allow_other,api_key_file="]
    assert complete(p, ["mcpfs", "-o", "rw,state_dir=st"], workdir) == ["rw,state_dir=state-a"]
    assert complete(p, ["mcpfs", "sta"], workdir) == ["state-a"]  # the mount point
    if not Path("/usr/share/bash-completion/bash_completion").is_file():
        pytest.skip("bash-completion is not installed (packaging/test-deps.txt)")
    # bash-completion finds the file where it was installed.
    assert complete(p, ["mcpfs", "--max"], workdir, loader=True) == ["--max-tokens="]


def instance_unit(installed, mnt, tmp):
    """A copy of the installed template named for the instance of mnt."""
    _, p = installed
    name = run(["systemd-escape", "--path", "--template=mcpfs@.service", str(mnt)]).out.strip()
    unit = tmp / name
    shutil.copy(p / "lib/systemd/user/mcpfs@.service", unit)
    return name, unit


def need_systemd_analyze():
    if shutil.which("systemd-analyze") is None or shutil.which("systemd-escape") is None:
        pytest.skip("systemd-analyze is not installed (package systemd, packaging/test-deps.txt)")


def bind_prefix_script(installed):
    destdir, prefix = installed
    real = real_prefix(installed)
    if real != "/usr/local":
        pytest.skip("the build's prefix is %s; these tests bind the installed tree over "
                    "/usr/local only" % real)
    return "mount --bind %s /usr/local\n" % shlex.quote(str(prefix))


def test_systemd_unit_verifies(installed, workdir):
    """systemd-analyze verify needs no running systemd (this machine has none),
    but it checks that ExecStart's binary and the Documentation= man page exist:
    the installed tree is bound over /usr/local in a private namespace."""
    need_systemd_analyze()
    require_unshare()
    _, p = installed
    text = (p / "lib/systemd/user/mcpfs@.service").read_text()
    assert re.search(r"^ExecStart=/usr/local/bin/mcpfs -f \$MCPFS_OPTIONS %f$", text, re.M)
    assert re.search(r"^ExecStop=-/bin/sh -c '.*fusermount3 -u \"\$\$1\".*' mcpfs-stop %f$",
                     text, re.M)
    assert re.search(r"^Restart=on-failure$", text, re.M)
    assert re.search(r"^Type=simple$", text, re.M)
    assert "Documentation=man:mcpfs(1)" in text
    name, unit = instance_unit(installed, "/home/me/mcp", workdir)
    broken = workdir / name.replace("mcpfs@", "broken@")
    broken.write_text(text.replace("ExecStart=/usr/local/bin/mcpfs", "ExecStart=/usr/local/bin/nope"))
    rt = workdir / "runtime"
    rt.mkdir(mode=0o700)
    r = in_namespace(bind_prefix_script(installed) + r"""
        export XDG_RUNTIME_DIR=%(rt)s
        systemd-analyze --user verify %(unit)s 2>&1; echo "RC $?"
        systemd-analyze --user verify %(broken)s 2>&1; echo "RC_BROKEN $?"
        """ % dict(rt=rt, unit=shlex.quote(str(unit)), broken=shlex.quote(str(broken))),
        timeout=60)
    assert r.rc == 0, r
    lines = r.out.splitlines()
    i = lines.index("RC 0") if "RC 0" in lines else -1
    assert i == 0, "systemd-analyze verify complained:\n" + r.out
    # The same check fails a unit whose binary is missing (it can fail).
    assert "RC_BROKEN 0" not in lines and "/usr/local/bin/nope" in r.out, r.out


def unit_commands(text, values):
    """The unit's Exec lines split into words as systemd does (quotes as in the
    shell), with the specifiers used (%f %i %E %h), $MCPFS_OPTIONS (split at
    white space) and $$ expanded."""
    out = {"ExecStartPre": [], "ExecStart": [], "ExecStop": []}
    for line in text.splitlines():
        m = re.match(r"^(ExecStartPre|ExecStart|ExecStop)=(-?)(.*)$", line)
        if not m:
            continue
        argv = []
        for word in shlex.split(m.group(3)):
            if word == "$MCPFS_OPTIONS":
                argv += values["MCPFS_OPTIONS"].split()
                continue
            assert "$" not in word.replace("$$", ""), "unexpected variable in %r" % line
            for spec in ("%f", "%i", "%E", "%h"):
                word = word.replace(spec, values[spec])
            argv.append(word.replace("$$", "$"))
        out[m.group(1)].append((m.group(2) == "-", argv))
    return out


def test_systemd_unit_commands_mount_restart_and_stop(installed, workdir, fake):
    """No systemd runs here, so the unit's own command lines are run the way
    systemd would: ExecStartPre, ExecStart (in the foreground, as Type=simple),
    a crash (kill -9) and the restart that Restart=on-failure makes, then
    ExecStop, after which the daemon exits 0 and nothing is mounted."""
    need_systemd_analyze()
    require_unshare()
    _, p = installed
    mnt = workdir / "home" / "mcp"  # does not exist yet: ExecStartPre makes it
    config = workdir / "home" / ".config"
    (config / "mcpfs").mkdir(parents=True)
    name, unit = instance_unit(installed, mnt, workdir)
    instance = name[len("mcpfs@"):-len(".service")]
    env_file = config / "mcpfs" / (instance + ".env")
    fake.add_model("m-unit")  # the Models API (and so the Messages API) knows it
    env_file.write_text("MCPFS_OPTIONS=--state-dir=%s --model=m-unit\n"
                        "ANTHROPIC_API_KEY=%s\nANTHROPIC_BASE_URL=%s\n"
                        % (workdir / "state", DEFAULT_KEY, fake.base_url))
    os.chmod(env_file, 0o600)
    assert re.search(r"^EnvironmentFile=-%E/mcpfs/%i.env$", unit.read_text(), re.M)
    values = {"%f": str(mnt), "%i": instance, "%E": str(config), "%h": str(workdir / "home"),
              "MCPFS_OPTIONS": "--state-dir=%s --model=m-unit" % (workdir / "state")}
    cmds = unit_commands(unit.read_text(), values)
    assert len(cmds["ExecStart"]) == 1 and cmds["ExecStop"]

    def lines(kind):
        out = []
        for ignore, argv in cmds[kind]:
            cmd = " ".join(shlex.quote(a) for a in argv)
            out.append("%s || { echo '%s FAILED'; %s }"
                       % (cmd, kind, "" if ignore else "exit 20;"))
        return "\n".join(out)
    start = lines("ExecStartPre") + "\n" + r"""
        %(exec_start)s >>%(log)s 2>&1 &
        main=$!
        for i in $(seq 100); do grep -q " %(mnt)s " /proc/self/mountinfo && break; sleep 0.1; done
        grep -q " %(mnt)s " /proc/self/mountinfo || { echo "not mounted"; exit 21; }
        """
    script = bind_prefix_script(installed) + r"""
        ns_mounts="%(mnt)s"
        set -a; . %(env_file)s; set +a
        """ + start + r"""
        mkdir %(mnt)s/c && echo one > %(mnt)s/c/input && echo "OUT1 $(cat %(mnt)s/c/output)"
        kill -9 $main; wait $main
        echo "CRASHED $(ls %(mnt)s 2>&1 | head -1)"
        """ + start + r"""
        echo two > %(mnt)s/c/input && echo "OUT2 $(cat %(mnt)s/c/output)"
        """ + lines("ExecStop") + r"""
        # systemd sends SIGTERM to what is left after ExecStop (at once; here
        # the daemon is given 10 s to show that ExecStop alone stops it).
        for i in $(seq 100); do kill -0 $main 2>/dev/null || break; sleep 0.1; done
        kill -0 $main 2>/dev/null && { echo SIGTERM; kill -TERM $main; }
        wait $main; echo "EXIT $?"
        grep -q " %(mnt)s " /proc/self/mountinfo && echo STILL_MOUNTED
        echo DONE
        """
    script = script % dict(mnt=mnt, env_file=shlex.quote(str(env_file)),
                           exec_start=" ".join(shlex.quote(a) for a in cmds["ExecStart"][0][1]),
                           log=shlex.quote(str(workdir / "unit.log")))
    r = in_namespace(script, timeout=90)
    log = (workdir / "unit.log").read_text() if (workdir / "unit.log").exists() else ""
    assert r.rc == 0 and "DONE" in r.out, "%r\nlog:\n%s" % (r, log)
    assert "OUT1 " + reply_for("one") in r.out
    assert "CRASHED" in r.out and "Transport endpoint is not connected" in r.out
    assert "OUT2 " + reply_for("two") in r.out
    assert "EXIT 0" in r.out and "STILL_MOUNTED" not in r.out
    # ExecStop itself unmounted (the mount was idle but for the daemon).
    assert "ExecStop FAILED" not in r.out and "SIGTERM" not in r.out, r.out
    assert [c.model for c in fake.calls] == ["m-unit", "m-unit"]
    # The second run saw the first one's conversation: the same state directory.
    assert fake.calls[-1].n_messages == 3
    assert "mcpfs: error" not in log and DEFAULT_KEY not in log
