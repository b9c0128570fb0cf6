"""sectionctl, the command-line tool: its commands' output and
exit codes, checked against what ordinary calls (os.stat, os.getxattr,
os.listdir) say about the same sections.

Every test with a mount runs once per data path (the mnt fixture).  The
tests under "Controls" need the daemon's lifetime, seals and resident
attributes; the others need only kind and backing.  Exit codes:
0 success, 1 a failed operation, 2 bad usage (man/sectionctl.1).
"""

import errno
import json
import os
import re
import resource
import signal
import stat
import subprocess

import pytest

import util
from util import (BACKING, BACKING_NOW, GiB, KIND, KiB, LIFETIME, MiB,
                  RESIDENT, SEALS, TiB)

COLUMNS = ['NAME', 'KIND', 'SIZE', 'RESIDENT', 'LIFETIME', 'SEALS',
           'BACKING']
RIGHT_ALIGNED = {'SIZE', 'RESIDENT'}
INFO_KEYS = ['path', 'kind', 'size', 'resident', 'lifetime', 'seals',
             'backing']
JSON_KEYS = {'name', 'kind', 'size', 'resident', 'lifetime', 'seals',
             'backing', 'backing_now'}


def sectionctl():
    """Path of the tool under test; fails the test if it is not built."""
    path = util.SECTIONCTL
    if not os.access(path, os.X_OK):
        pytest.fail('sectionctl %s is not built (run make, or make '
                    'sectionctl/sectionctl; SECTIONFS_BUILD_DIR=%s)'
                    % (path, util.BUILD_DIR))
    return path


def run(*args, cwd='/', preexec_fn=None, stdout=subprocess.PIPE):
    """Run sectionctl with args; CompletedProcess with str output (bytes
    that are not UTF-8 kept as surrogates, as os.listdir does)."""
    env = dict(os.environ, LC_ALL='C.UTF-8')
    return subprocess.run([sectionctl()] + [str(a) for a in args],
                          stdout=stdout, stderr=subprocess.PIPE, cwd=cwd,
                          env=env, preexec_fn=preexec_fn,
                          encoding='utf-8', errors='surrogateescape',
                          timeout=util.PATIENCE)


def ok(*args, **kw):
    """Run sectionctl, expecting exit 0 and nothing on stderr."""
    res = run(*args, **kw)
    assert (res.returncode, res.stderr) == (0, ''), res
    return res


def refused(rc, *args, **kw):
    """Run sectionctl, expecting exit rc, one message and no output."""
    res = run(*args, **kw)
    assert res.returncode == rc, res
    assert res.stdout == '', res
    assert res.stderr.startswith('sectionctl: '), res
    if rc == 2:
        assert re.search(r"^Try 'sectionctl( \w+)? --help'\.$",
                         res.stderr, re.M), res.stderr
    return res


def xattr(path, name):
    """The attribute as str, or None where the file has none."""
    try:
        return os.getxattr(path, name).decode()
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise


def ls_json(path, **kw):
    return json.loads(ok('ls', '--json', path, **kw).stdout)


def ls_table(path, *opts, **kw):
    """(header, rows) of the table, each a list of cells; names must have
    no blanks.  Also checks that every column is aligned."""
    lines = ok('ls', *opts, path, **kw).stdout.splitlines()
    spans = [[m.span() for m in re.finditer(r'\S+', line)]
             for line in lines]
    header = lines[0].split()
    assert header == COLUMNS
    for line, sp in zip(lines, spans):
        assert len(sp) == len(COLUMNS), line
    for col, title in enumerate(COLUMNS):
        edge = 1 if title in RIGHT_ALIGNED else 0
        assert len({sp[col][edge] for sp in spans}) == 1, \
            'column %s not aligned:\n%s' % (title, '\n'.join(lines))
    return header, [line.split() for line in lines[1:]]


def info(path, **kw):
    """sectionctl info as a dict, checking the keys and their order."""
    lines = ok('info', path, **kw).stdout.splitlines()
    pairs = [line.split(': ', 1) for line in lines]
    assert [k for k, _ in pairs] == INFO_KEYS, lines
    return dict(pairs)


def cell(value):
    """How the table and info show a field that may not apply."""
    return '-' if value is None else value


@pytest.fixture
def backing(base_dir):
    """Factory for backing files outside the mount."""
    def make(name='backing', data=b'backing data\n'):
        path = os.path.join(base_dir, name)
        util.write_file(path, data)
        return path
    return make


# --------------------------------------------------------------------------
# Help, version and bad usage (no mount needed)

def test_help_lists_commands():
    for flag in ('--help', '-h'):
        out = ok(flag).stdout
        assert out.startswith('Usage: sectionctl ')
        for word in ('create', 'ls', 'info', '--version'):
            assert word in out


@pytest.mark.parametrize('cmd,words', [
    ('create', ['--size', '--file', '--lifetime', '--seal', 'SECTION']),
    ('ls', ['--json', '--bytes', 'DIR']),
    ('info', ['SECTION']),
])
def test_command_help(cmd, words):
    for flag in ('--help', '-h'):
        out = ok(cmd, flag).stdout
        assert out.startswith('Usage: sectionctl %s ' % cmd)
        for w in words:
            assert w in out


def test_help_wins_over_bad_values():
    ok('create', '--size', 'nonsense', '--seal', 'x', '--help')
    ok('ls', 'a', 'b', '--help')


def test_version():
    with open(os.path.join(util.TEST_DIR, '..', 'configure.ac')) as f:
        version = re.search(r'AC_INIT\(\[sectionfs\], \[([^]]+)\]',
                            f.read()).group(1)
    for flag in ('--version', '-V'):
        assert ok(flag).stdout == 'sectionctl (sectionfs) %s\n' % version


@pytest.mark.parametrize('args,message', [
    ([], 'missing COMMAND'),
    (['bogus'], "unknown command 'bogus'"),
    (['--bogus'], "unknown option '--bogus'"),
    (['-q'], "unknown option '-q'"),
    (['create'], 'create: missing SECTION'),
    (['create', 'a', 'b'], "create: unexpected argument 'b'"),
    (['create', '--size'], "create: option '--size' needs a value"),
    (['create', '--s', '1', 'x'], "create: ambiguous option '--s'"),
    (['create', '--lifetime', 'forever', 'x'],
     "create: bad lifetime 'forever': expected name or handle"),
    (['info'], 'info: missing SECTION'),
    (['info', 'a', 'b'], "info: unexpected argument 'b'"),
    (['ls', 'a', 'b'], "ls: unexpected argument 'b'"),
    (['ls', '--json=yes'], "ls: option '--json' takes no value"),
    (['ls', '-z'], "ls: unknown option '-z'"),
])
def test_usage_errors(args, message):
    res = refused(2, *args)
    assert res.stderr.startswith('sectionctl: %s\n' % message), res.stderr


# --------------------------------------------------------------------------
# Paths that are not on sectionfs

def test_not_sectionfs(base_dir):
    util.write_file(os.path.join(base_dir, 'f'), b'x')
    for args, path in [(['ls', base_dir], base_dir),
                       (['ls', '--json', base_dir], base_dir),
                       (['info', base_dir + '/f'], base_dir + '/f'),
                       (['create', base_dir + '/new'], base_dir + '/new'),
                       (['create', '--file', base_dir + '/f',
                         base_dir + '/new'], base_dir + '/new')]:
        res = refused(1, *args)
        assert res.stderr == ('sectionctl: %s: %s: not on a sectionfs mount '
                              '(no fuse.sectionfs file system here)\n'
                              % (args[0], path)), res.stderr
    assert os.listdir(base_dir) == ['f']


def test_ls_default_dir_not_sectionfs(base_dir):
    res = refused(1, 'ls', cwd=base_dir)
    assert 'sectionctl: ls: .: not on a sectionfs mount' in res.stderr


def test_missing_paths(mnt):
    res = refused(1, 'info', mnt / 'nothing')
    assert res.stderr == 'sectionctl: info: %s: No such file or directory\n' \
        % (mnt / 'nothing')
    res = refused(1, 'ls', mnt / 'nothing')
    assert res.stderr == 'sectionctl: ls: %s: No such file or directory\n' \
        % (mnt / 'nothing')
    res = refused(1, 'create', os.path.join(mnt.path, 'nodir', 'x'))
    assert 'No such file or directory' in res.stderr


# --------------------------------------------------------------------------
# create: page-file-backed

def test_create_plain(mnt):
    res = ok('create', mnt / 's')
    assert res.stdout == ''
    st = os.stat(mnt / 's')
    assert stat.S_ISREG(st.st_mode)
    assert st.st_size == 0
    assert xattr(mnt / 's', KIND) == 'pagefile'
    assert xattr(mnt / 's', BACKING) is None


def test_create_relative_path(mnt):
    os.mkdir(mnt / 'd')
    ok('create', '--size', '10', 'd/s', cwd=mnt.path)
    assert os.stat(os.path.join(mnt.path, 'd', 's')).st_size == 10
    ok('create', 'top', cwd=mnt / 'd')
    assert sorted(os.listdir(mnt / 'd')) == ['s', 'top']


@pytest.mark.parametrize('umask,mode', [(0o022, 0o644), (0o027, 0o640),
                                        (0o077, 0o600), (0, 0o666)])
def test_create_mode_follows_umask(mnt, umask, mode):
    ok('create', mnt / 's', preexec_fn=lambda: os.umask(umask))
    assert stat.S_IMODE(os.stat(mnt / 's').st_mode) == mode


@pytest.mark.parametrize('arg,size', [
    ('0', 0), ('1', 1), ('4096', 4096), ('4k', 4 * KiB), ('3K', 3 * KiB),
    ('1m', MiB), ('5M', 5 * MiB), ('2g', 2 * GiB), ('1T', TiB),
])
def test_create_size(mnt, arg, size):
    ok('create', '--size', arg, mnt / 's')
    assert os.stat(mnt / 's').st_size == size
    # Sparse: nothing was written.
    with open(mnt / 's', 'rb') as f:
        assert f.read(4096) == b'\0' * min(size, 4096)


def test_create_size_option_forms(mnt):
    ok('create', '--size=8k', mnt / 'a')
    ok('create', mnt / 'b', '--size', '8k')       # options after operands
    ok('create', '--siz', '8k', mnt / 'c')        # unambiguous prefix
    for name in 'abc':
        assert os.stat(mnt / name).st_size == 8 * KiB


@pytest.mark.parametrize('arg', ['', '12q', '-1', '+1', '1.5k', 'k', '4kb',
                                 '4 k', '0x10', '8388608t', '1%'])
def test_create_bad_size(mnt, arg):
    res = refused(2, 'create', '--size', arg, mnt / 's')
    assert res.stderr.startswith(
        "sectionctl: create: bad size '%s': expected a number with an "
        "optional k, m, g or t suffix\n" % arg), res.stderr
    assert os.listdir(mnt.path) == []


def test_create_existing_name(mnt):
    util.write_file(mnt / 's', b'precious')
    for args in (['create', mnt / 's'],
                 ['create', '--size', '1m', mnt / 's']):
        res = refused(1, *args)
        assert res.stderr == 'sectionctl: create: %s: File exists\n' \
            % (mnt / 's')
    assert util.read_file(mnt / 's') == b'precious'
    os.mkdir(mnt / 'd')
    res = refused(1, 'create', mnt / 'd')
    assert res.stderr == 'sectionctl: create: %s: File exists\n' % (mnt / 'd')


@pytest.mark.parametrize('arg', ['foo', 'grow,foo', 'grow,', ',', 'GROW',
                                 'grow shrink', 'seal'])
def test_create_bad_seal_word(mnt, arg):
    res = refused(2, 'create', '--seal', arg, mnt / 's')
    assert res.stderr.startswith(
        "sectionctl: create: bad seal list '%s': expected a comma list of "
        "grow, shrink and write\n" % arg), res.stderr
    assert os.listdir(mnt.path) == []


def test_create_failed_step_removes_section(mnt):
    """A step after the create fails: the step is named and nothing stays.
    RLIMIT_FSIZE makes the sizing fail (EFBIG) on any daemon."""
    def small_fsize():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    res = refused(1, 'create', '--size', '1m', mnt / 's',
                  preexec_fn=small_fsize)
    assert res.stderr == 'sectionctl: set size: %s: %s\n' \
        % (mnt / 's', os.strerror(errno.EFBIG))
    assert os.listdir(mnt.path) == []


# --------------------------------------------------------------------------
# create --file: file-backed

def test_create_file_backed(mnt, backing, base_dir):
    data = os.urandom(3 * util.PAGE + 5)
    target = backing(data=data)
    before = os.stat(target)
    # A relative --file is resolved (realpath) before the symlink.
    ok('create', '--file', 'backing', mnt / 'fb', cwd=base_dir)
    st = os.lstat(mnt / 'fb')
    assert stat.S_ISREG(st.st_mode)
    assert st.st_size == len(data)
    assert xattr(mnt / 'fb', KIND) == 'file'
    assert xattr(mnt / 'fb', BACKING) == os.path.realpath(target)
    assert util.read_file(mnt / 'fb') == data
    after = os.stat(target)
    assert (after.st_size, after.st_mtime_ns) == \
        (before.st_size, before.st_mtime_ns)


def test_create_file_through_symlink_is_resolved(mnt, backing, base_dir):
    target = backing()
    os.symlink(target, os.path.join(base_dir, 'link'))
    ok('create', '--file', os.path.join(base_dir, 'link'), mnt / 'fb')
    assert xattr(mnt / 'fb', BACKING) == os.path.realpath(target)


@pytest.mark.parametrize('extra,message', [
    (['--size', '4k'], '--size cannot be used with --file: a file-backed '
                       "section has its file's size"),
    (['--seal', 'grow'], '--seal cannot be used with --file: only '
                         'page-file-backed sections can be sealed'),
    (['--seal', ''], '--seal cannot be used with --file: only '
                     'page-file-backed sections can be sealed'),
])
def test_create_file_refuses_size_and_seal(mnt, backing, extra, message):
    target = backing(data=b'keep me')
    res = refused(2, 'create', '--file', target, *extra, mnt / 'fb')
    assert res.stderr.startswith('sectionctl: create: %s\n' % message)
    assert os.listdir(mnt.path) == []
    assert util.read_file(target) == b'keep me'


def test_create_file_bad_targets(mnt, base_dir):
    missing = os.path.join(base_dir, 'missing')
    res = refused(1, 'create', '--file', missing, mnt / 'fb')
    assert res.stderr == ('sectionctl: create: backing file: %s: No such '
                          'file or directory\n' % missing)
    res = refused(1, 'create', '--file', base_dir, mnt / 'fb')
    assert res.stderr == ('sectionctl: create: backing file: %s: not a '
                          'regular file\n' % base_dir)
    util.write_file(mnt / 'inside', b'x')
    res = refused(1, 'create', '--file', mnt / 'inside', mnt / 'fb')
    assert res.stderr == ('sectionctl: create: backing file: %s: is inside '
                          'the same sectionfs mount\n' % (mnt / 'inside'))
    assert os.listdir(mnt.path) == ['inside']


def test_create_file_existing_name(mnt, backing):
    util.write_file(mnt / 'fb', b'precious')
    res = refused(1, 'create', '--file', backing(), mnt / 'fb')
    assert res.stderr == 'sectionctl: create: %s: File exists\n' \
        % (mnt / 'fb')
    assert util.read_file(mnt / 'fb') == b'precious'


# --------------------------------------------------------------------------
# ls

def make_mixture(mnt, backing):
    """Sections of several sizes and kinds, a directory, a file-backed
    section; returns the names, sorted."""
    for name, size in [('empty', 0), ('one', 1), ('odd', 1025),
                       ('page', 4096), ('big', MiB), ('k10', 10 * KiB + 1),
                       ('almost', 1023)]:
        ok('create', '--size', size, mnt / name)
    os.mkdir(mnt / 'dir')
    ok('create', '--file', backing(data=b'12345'), mnt / 'fb')
    return sorted(os.listdir(mnt.path))


def expected_row(path, name):
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        return [name, 'dir', str(st.st_size), '-', '-', '-', '-']
    seals = xattr(path, SEALS)
    return [name, xattr(path, KIND), str(st.st_size),
            cell(xattr(path, RESIDENT)), cell(xattr(path, LIFETIME)),
            'none' if seals == '' else cell(seals),
            cell(xattr(path, BACKING))]


def test_ls_table_bytes(mnt, backing):
    names = make_mixture(mnt, backing)
    _, rows = ls_table(mnt.path, '--bytes')
    assert [r[0] for r in rows] == names
    for row in rows:
        assert row == expected_row(mnt / row[0], row[0])
    _, short = ls_table(mnt.path, '-b')
    assert short == rows


def test_ls_table_human_sizes(mnt, backing):
    make_mixture(mnt, backing)
    _, rows = ls_table(mnt.path)
    sizes = {r[0]: r[2] for r in rows}
    assert sizes['empty'] == '0'
    assert sizes['one'] == '1'
    assert sizes['almost'] == '1023'
    assert sizes['odd'] == '1.1K'       # rounded up, as ls -h
    assert sizes['page'] == '4.0K'
    assert sizes['k10'] == '11K'
    assert sizes['big'] == '1.0M'
    assert sizes['fb'] == '5'


def test_ls_default_is_current_directory(mnt, backing):
    make_mixture(mnt, backing)
    assert ok('ls', cwd=mnt.path).stdout == ok('ls', mnt.path).stdout
    assert ok('ls', '--json', cwd=mnt.path).stdout == \
        ok('ls', '--json', mnt.path).stdout


def test_ls_empty(mnt):
    out = ok('ls', mnt.path).stdout
    assert out.split() == COLUMNS
    assert out.count('\n') == 1
    assert ls_json(mnt.path) == []


def test_ls_subdirectory(mnt):
    os.makedirs(os.path.join(mnt.path, 'a', 'b'))
    ok('create', '--size', '3', os.path.join(mnt.path, 'a', 'b', 's'))
    ok('create', mnt / 'top')
    assert [o['name'] for o in
            ls_json(os.path.join(mnt.path, 'a', 'b'))] == ['s']
    assert [o['name'] for o in ls_json(mnt / 'a')] == ['b']
    assert [(o['name'], o['kind']) for o in ls_json(mnt.path)] == \
        [('a', 'dir'), ('top', 'pagefile')]


def test_ls_json_matches_ordinary_calls(mnt, backing):
    names = make_mixture(mnt, backing)
    objs = ls_json(mnt.path)
    assert [o['name'] for o in objs] == names
    for o in objs:
        assert set(o) == JSON_KEYS
        path = mnt / o['name']
        st = os.lstat(path)
        assert o['size'] == st.st_size
        assert isinstance(o['size'], int)
        if stat.S_ISDIR(st.st_mode):
            assert o == {'name': o['name'], 'kind': 'dir',
                         'size': st.st_size, 'resident': None,
                         'lifetime': None, 'seals': None, 'backing': None,
                         'backing_now': None}
            continue
        assert o['kind'] == xattr(path, KIND)
        assert o['backing'] == xattr(path, BACKING)
        assert o['backing_now'] == xattr(path, BACKING_NOW)
        assert o['lifetime'] == xattr(path, LIFETIME)
        seals = xattr(path, SEALS)
        assert o['seals'] == (None if seals is None else
                              [w for w in seals.split(',') if w])
        resident = xattr(path, RESIDENT)
        assert o['resident'] == (None if resident is None
                                 else int(resident))


def test_ls_of_one_section(mnt, backing):
    ok('create', '--size', '4k', mnt / 's')
    objs = ls_json(mnt / 's')
    assert [(o['name'], o['kind'], o['size']) for o in objs] == \
        [(mnt / 's', 'pagefile', 4096)]
    _, rows = ls_table(mnt / 's', '-b')
    assert rows == [expected_row(mnt / 's', mnt / 's')]


NASTY_NAMES = ['new\nline', 'tab\there', 'quote"d', 'back\\slash',
               'caf\u00e9', '\u65e5\u672c', 'sp ace', 'esc\x1b[31m',
               'bad\udcffbyte', 'bell\x07', '-dash', '.hidden']


def test_ls_json_escapes_names(mnt):
    for name in NASTY_NAMES:
        util.write_file(os.path.join(os.fsencode(mnt.path),
                                     os.fsencode(name)), b'x')
    res = ok('ls', '--json', mnt.path)
    objs = json.loads(res.stdout)
    assert sorted(o['name'] for o in objs) == sorted(os.listdir(mnt.path))
    # The output is plain JSON text: no raw control characters.
    assert not re.search(r'[\x00-\x09\x0b-\x1f]', res.stdout)
    assert '\\udcff' in res.stdout


def test_ls_table_escapes_names(mnt):
    for name in NASTY_NAMES:
        util.write_file(os.path.join(os.fsencode(mnt.path),
                                     os.fsencode(name)), b'x')
    out = ok('ls', mnt.path).stdout
    lines = out.splitlines()
    assert len(lines) == 1 + len(NASTY_NAMES)
    assert not re.search(r'[\x00-\x09\x0b-\x1f\x7f]', out)
    shown = {line.split('  ')[0].rstrip() for line in lines[1:]}
    for expect in ['new\\x0aline', 'tab\\x09here', 'quote"d',
                   'back\\\\slash', 'caf\u00e9', '\u65e5\u672c', 'sp ace',
                   'esc\\x1b[31m', 'bad\\xffbyte', 'bell\\x07', '-dash',
                   '.hidden']:
        assert expect in shown, (expect, shown)
    # Wide characters count as two columns: the KIND column still lines up.
    kinds = {line.index('pagefile') for line in lines[1:]
             if '\u65e5' not in line}
    assert len(kinds) == 1
    wide = next(line for line in lines[1:] if '\u65e5' in line)
    assert wide.index('pagefile') == kinds.pop() - 2


def test_ls_write_error(mnt):
    ok('create', mnt / 's')
    with open('/dev/full', 'w') as full:
        res = run('ls', mnt.path, stdout=full)
    assert res.returncode == 1
    assert res.stderr == 'sectionctl: write: standard output: %s\n' \
        % os.strerror(errno.ENOSPC)


@pytest.fixture
def allow_other_mnt(mount_factory, datapath):
    """A mount other users may enter (allow_other)."""
    return mount_factory(datapath, options=['allow_other'])


@pytest.mark.other_user
def test_ls_unreadable_attributes(allow_other_mnt):
    """An attribute the caller may not read shows "?", is reported once
    per row, and makes the exit status 1; the other rows are whole."""
    mnt = allow_other_mnt
    os.chmod(mnt.path, 0o755)
    ok('create', mnt / 'secret', preexec_fn=lambda: os.umask(0o077))
    ok('create', mnt / 'open', preexec_fn=lambda: os.umask(0o022))
    argv = util.as_user_argv(util.NOBODY) + [sectionctl(), 'ls', '-b',
                                              mnt.path]
    res = subprocess.run(argv, capture_output=True, text=True, cwd='/',
                         timeout=util.PATIENCE)
    assert res.returncode == 1, res
    assert res.stderr == ('sectionctl: read %s: %s: Permission denied\n'
                          % (KIND, mnt / 'secret')), res.stderr
    rows = {line.split()[0]: line.split() for line in
            res.stdout.splitlines()[1:]}
    assert rows['secret'][1] == '?'
    assert rows['secret'][2] == '0'
    assert rows['open'][1] == 'pagefile'


# --------------------------------------------------------------------------
# info

def test_info_page_file_backed(mnt):
    ok('create', '--size', '8k', mnt / 's')
    got = info(mnt / 's')
    row = expected_row(mnt / 's', mnt / 's')
    assert got == dict(zip(INFO_KEYS, row))
    assert got['kind'] == 'pagefile'
    assert got['size'] == '8192'
    assert got['backing'] == '-'


def test_info_file_backed(mnt, backing):
    target = backing(data=b'x' * 5000)
    ok('create', '--file', target, mnt / 'fb')
    got = info(mnt / 'fb')
    assert got['kind'] == 'file'
    assert got['size'] == '5000'
    assert got['backing'] == os.path.realpath(target)
    assert got['seals'] == '-'


def test_info_directory_and_relative_path(mnt):
    os.mkdir(mnt / 'd')
    got = info('d', cwd=mnt.path)
    assert got['path'] == 'd'
    assert got['kind'] == 'dir'
    assert [got[k] for k in ('resident', 'lifetime', 'seals', 'backing')] \
        == ['-'] * 4


# --------------------------------------------------------------------------
# Controls: lifetime, seals, resident (the daemon's control attributes)

@pytest.mark.parametrize('value', ['name', 'handle'])
def test_create_lifetime(mnt, value):
    ok('create', '--size', '4k', '--lifetime', value, mnt / 's')
    # Setting handle on a section nobody holds destroys nothing yet.
    assert os.stat(mnt / 's').st_size == 4096
    assert xattr(mnt / 's', LIFETIME) == value
    assert info(mnt / 's')['lifetime'] == value
    assert ls_json(mnt.path)[0]['lifetime'] == value
    # ls and info read attributes without opening: still there.
    assert os.path.exists(mnt / 's')


def test_create_lifetime_handle_dies_with_its_user(mnt):
    ok('create', '--lifetime', 'handle', mnt / 's')
    fd = os.open(mnt / 's', os.O_RDWR)
    os.write(fd, b'data')
    os.close(fd)
    assert util.wait_for(lambda: not os.path.exists(mnt / 's'), timeout=10)


def test_create_file_backed_lifetime(mnt, backing):
    target = backing(data=b'survives')
    ok('create', '--file', target, '--lifetime', 'handle', mnt / 'fb')
    assert xattr(mnt / 'fb', LIFETIME) == 'handle'
    assert util.read_file(mnt / 'fb') == b'survives'
    assert util.wait_for(lambda: not os.path.exists(mnt / 'fb'), timeout=10)
    assert util.read_file(target) == b'survives'


def test_create_on_handle_lifetime_mount(mount_factory, datapath):
    mnt = mount_factory(datapath, options=['lifetime=handle'])
    ok('create', '--size', '4k', '--lifetime', 'name', mnt / 'kept')
    assert xattr(mnt / 'kept', LIFETIME) == 'name'
    # sectionctl's own close must not destroy a section made with handle.
    ok('create', '--size', '4k', '--lifetime', 'handle', mnt / 'next')
    assert xattr(mnt / 'next', LIFETIME) == 'handle'
    util.read_file(mnt / 'next')
    assert util.wait_for(lambda: not os.path.exists(mnt / 'next'),
                         timeout=10)
    # Without --lifetime nothing holds it once sectionctl exits: a warning.
    res = run('create', mnt / 'brief')
    assert res.returncode == 0, res
    assert res.stderr.startswith('sectionctl: create: %s: warning: '
                                 % (mnt / 'brief')), res.stderr
    assert util.wait_for(lambda: not os.path.exists(mnt / 'brief'),
                         timeout=10)
    assert os.stat(mnt / 'kept').st_size == 4096


@pytest.mark.parametrize('arg,canonical', [
    ('grow', 'grow'), ('shrink', 'shrink'), ('write', 'write'),
    ('write,grow', 'grow,write'), ('grow,grow,shrink', 'grow,shrink'),
    ('shrink,write,grow', 'grow,shrink,write'), ('', ''),
])
def test_create_seals(mnt, arg, canonical):
    ok('create', '--size', '8k', '--seal', arg, mnt / 's')
    # The size was set before the seals, so a grow seal did not block it.
    assert os.stat(mnt / 's').st_size == 8192
    assert xattr(mnt / 's', SEALS) == canonical
    assert info(mnt / 's')['seals'] == (canonical or 'none')
    assert ls_json(mnt.path)[0]['seals'] == \
        [w for w in canonical.split(',') if w]
    # Each seal is in force: the kernel refuses the change with EPERM (a
    # write seal may already refuse the open for writing).
    path = mnt / 's'
    acts = {'grow': lambda: os.truncate(path, 16384),
            'shrink': lambda: os.truncate(path, 4096),
            'write': lambda: write_one_byte(path)}
    for seal in filter(None, canonical.split(',')):
        with pytest.raises(OSError) as e:
            acts[seal]()
        assert e.value.errno == errno.EPERM, seal
    assert os.stat(path).st_size == 8192
    assert util.read_file(path) == b'\0' * 8192


def write_one_byte(path):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b'x', 0)
    finally:
        os.close(fd)


def test_ls_and_info_show_controls(mnt, backing):
    ok('create', '--size', '8k', '--seal', 'shrink,grow', mnt / 'sealed')
    ok('create', '--size', '8k', mnt / 'plain')
    ok('create', '--file', backing(), mnt / 'fb')
    _, rows = ls_table(mnt.path, '-b')
    by_name = {r[0]: r for r in rows}
    assert by_name['sealed'][4:6] == ['name', 'grow,shrink']
    assert by_name['plain'][4:6] == ['name', 'none']
    assert by_name['fb'][4:6] == ['name', '-']
    for r in rows:
        assert r[3].isdigit(), r            # resident, bytes
    objs = {o['name']: o for o in ls_json(mnt.path)}
    assert objs['plain']['seals'] == []
    assert objs['sealed']['seals'] == ['grow', 'shrink']
    assert objs['fb']['seals'] is None
    assert info(mnt / 'plain')['seals'] == 'none'


def test_resident_follows_touched_pages(mnt):
    ok('create', '--size', '1m', mnt / 's')
    before = ls_json(mnt.path)[0]['resident']
    assert isinstance(before, int)
    fd = os.open(mnt / 's', os.O_RDWR)
    try:
        os.pwrite(fd, os.urandom(256 * KiB), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    after = ls_json(mnt.path)[0]['resident']
    assert after >= 256 * KiB > before
    assert after == int(xattr(mnt / 's', RESIDENT))
    assert info(mnt / 's')['resident'] == str(after)


@pytest.mark.root
def test_seal_refused_on_capped_store(mount_factory):
    """A privileged passthrough mount with size= keeps sections on a
    capped tmpfs, which cannot seal: the step is named, nothing stays."""
    mnt = mount_factory('passthrough', options=['size=64m'])
    res = refused(1, 'create', '--size', '4k', '--seal', 'grow', mnt / 's')
    assert res.stderr == 'sectionctl: set seals: %s: %s\n' \
        % (mnt / 's', os.strerror(errno.EOPNOTSUPP))
    assert os.listdir(mnt.path) == []
