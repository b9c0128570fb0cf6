"""Many users on one mount: per-user and per-group limits, the
descriptor budget, and what sectionctl shows of them.

- usrquota_block_hardlimit= / grpquota_block_hardlimit=: page-file bytes
  charged to a section's owner and group.  Past a limit a write gets
  EDQUOT on the cached path; on passthrough each owner's bytes live in a
  private tmpfs of the limit's size, whose kernel refuses the write with
  ENOSPC (only the daemon can choose EDQUOT).  Truncate growth under
  commit=eager and fallocate reach the daemon: EDQUOT on both paths.
- usrquota_inode_hardlimit= / grpquota_inode_hardlimit=: nodes per owner
  and group, as tmpfs's inode quotas count them: sections (page-file- and
  file-backed), directories, symbolic links, FIFOs, sockets and device
  nodes; a create past it: EDQUOT; chown moves the charge.
- Every section holds one of the daemon's descriptors: creates stop with
  ENOSPC while a reserve is left for root and the daemon, and df -i says
  so.
- sectionctl quota: each owner's usage and limits, read from the mount
  root's user.sectionfs.quota.

Other users are played with setpriv (util.as_user_argv); every data
test runs on both data paths.
"""

import errno
import json
import os
import subprocess

import pytest

import util

KiB = 1 << 10
MiB = 1 << 20
PAGE = util.PAGE
USER = util.NOBODY      # the limited user
OTHER = 60001           # a second user
GROUP = 60002           # a group two users share
QUOTA = 'user.sectionfs.quota'

pytestmark = [pytest.mark.root, pytest.mark.other_user]

_PRELUDE = r'''
import errno, json, os, sys
def name(e):
    return errno.errorcode.get(e.errno, str(e.errno))
def fill(path, total, chunk=64 * 1024):
    """Write until total bytes or an error: [written, 'ok' or errno]."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    done, res = 0, 'ok'
    try:
        while done < total:
            done += os.write(fd, b'q' * min(chunk, total - done))
    except OSError as e:
        res = name(e)
    os.close(fd)
    return [done, res]
def attempt(fn, *args):
    try:
        fn(*args)
        return 'ok'
    except OSError as e:
        return name(e)
def create(path):
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
def falloc(path, length):
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.posix_fallocate(fd, 0, length)
    finally:
        os.close(fd)
def grow(path, length):
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, length)
    finally:
        os.close(fd)
'''


def as_user(uid, code, gid=None):
    """Run code (with _PRELUDE's helpers) as uid/gid; the JSON it prints
    in `out` is returned."""
    res = subprocess.run(util.as_user_argv(uid, gid) +
                         [util.PYTHON, '-I', '-c',
                          _PRELUDE + code + '\nprint(json.dumps(out))'],
                         capture_output=True, text=True, cwd='/',
                         timeout=util.PATIENCE)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def shared(mount_factory, datapath, *options):
    """A mount other users may use, with a sticky world-writable 'pub'."""
    if util.VALGRIND and datapath == 'passthrough' and \
            any(o.startswith('usrquota_block') for o in options):
        pytest.skip('valgrind does not implement fsopen(2), which a user '
                    'byte limit with passthrough needs')
    mnt = mount_factory(datapath, options=['allow_other'] + list(options))
    os.mkdir(mnt / 'pub')
    os.chmod(mnt / 'pub', 0o1777)
    return mnt


def quota_lines(mnt, uid=0):
    """The mount root's quota attribute as read by uid: {(kind, id):
    [bytes, inodes, byte limit, inode limit]}, None for '-'."""
    out = as_user(uid, 'out = os.getxattr(%r, %r).decode()'
                  % (mnt.path, QUOTA))
    table = {}
    for line in out.splitlines():
        kind, ident, *nums = line.split()
        table[(kind, int(ident))] = [None if n == '-' else int(n)
                                     for n in nums]
    return table


def write_refusal(datapath):
    """What a write past a block limit gets (see the module's doc)."""
    return {'EDQUOT'} if datapath == 'cached' else {'ENOSPC', 'EDQUOT'}


# --------------------------------------------------------------------------
# The options

@pytest.mark.parametrize('option', [
    'usrquota', 'grpquota', 'usrquota_block_hardlimit=1m',
    'usrquota_inode_hardlimit=10', 'grpquota_block_hardlimit=64k',
    'grpquota_inode_hardlimit=7'])
def test_quota_options_mount(mount_factory, option):
    """Each option tmpfs names mounts (on the cached path, where every
    one of them is honoured alike)."""
    mnt = mount_factory('cached', options=[option])
    with open(mnt / 'f', 'wb') as f:
        f.write(b'x')


@pytest.mark.parametrize('option', [
    'usrquota_block_hardlimit=lots', 'usrquota_inode_hardlimit=1x',
    'grpquota_inode_hardlimit=-1', 'grpquota_block_hardlimit=5%',
    'nr_inodes=0', 'nr_inodes=many'])
def test_quota_bad_values_refused(base_dir, option):
    """A malformed limit is refused before mounting, in one line naming
    the option."""
    mp = os.path.join(base_dir, 'mp')
    os.mkdir(mp)
    res = util.run_daemon(['-f', '-o', option, mp])
    assert res.returncode != 0
    assert option.split('=')[0] in res.stderr, res.stderr
    assert not util.is_mounted(mp)


# --------------------------------------------------------------------------
# Per-user block limit

def test_user_block_limit_write(mount_factory, datapath):
    """A user's writes stop at their limit; another user and root are
    not held to it."""
    mnt = shared(mount_factory, datapath, 'usrquota_block_hardlimit=1m')
    done, res = as_user(USER, 'out = fill(%r, 3 * %d)'
                        % (mnt / 'pub/a', MiB))
    assert res in write_refusal(datapath), (done, res)
    assert MiB - 64 * KiB <= done <= MiB, done
    assert os.stat(mnt / 'pub/a').st_size == done
    # Another user, and root, write as much again.
    assert as_user(OTHER, 'out = fill(%r, %d)' % (mnt / 'pub/b', MiB)) \
        == [MiB, 'ok']
    with open(mnt / 'pub/c', 'wb') as f:
        f.write(b'r' * 2 * MiB)
    # Unlinking gives the room back, once the kernel forgets the file.
    os.unlink(mnt / 'pub/a')
    assert util.wait_for(lambda: as_user(
        USER, 'out = fill(%r, %d)' % (mnt / 'pub/d', 512 * KiB))
        == [512 * KiB, 'ok'], timeout=util.PATIENCE)


def test_user_block_limit_fallocate(mount_factory, datapath):
    """fallocate past the limit: EDQUOT on both paths, nothing kept;
    within it, done."""
    mnt = shared(mount_factory, datapath, 'usrquota_block_hardlimit=1m')
    out = as_user(USER, '''
out = [attempt(falloc, %r, 2 * %d), os.stat(%r).st_blocks,
       attempt(falloc, %r, 512 * 1024)]
''' % (mnt / 'pub/f', MiB, mnt / 'pub/f', mnt / 'pub/g'))
    assert out == ['EDQUOT', 0, 'ok'], out


def test_user_block_limit_eager_growth(mount_factory, datapath):
    """Under commit=eager a growth allocates: past the limit, EDQUOT on
    both paths and the size unchanged."""
    mnt = shared(mount_factory, datapath, 'usrquota_block_hardlimit=1m',
                 'commit=eager')
    out = as_user(USER, '''
out = [attempt(grow, %r, 2 * %d), os.stat(%r).st_size,
       attempt(grow, %r, 256 * 1024)]
''' % (mnt / 'pub/t', MiB, mnt / 'pub/t', mnt / 'pub/t'))
    assert out == ['EDQUOT', 0, 'ok'], out


def test_chown_moves_the_charge(mount_factory, datapath):
    """chown moves a section's count to its new owner on both paths.  Its
    bytes move too on the cached path; on passthrough they stay where
    the kernel keeps them, in the store of the owner who created it."""
    mnt = shared(mount_factory, datapath, 'usrquota_block_hardlimit=1m')
    assert as_user(USER, 'out = fill(%r, %d)' % (mnt / 'pub/a', 768 * KiB)) \
        == [768 * KiB, 'ok']
    before = quota_lines(mnt)
    assert before[('u', USER)][:2] == [768 * KiB, 1], before
    os.chown(mnt / 'pub/a', OTHER, OTHER)
    after = quota_lines(mnt)
    assert after[('u', OTHER)][1] == 1, after
    assert after.get(('u', USER), [0, 0])[1] == 0, after
    if datapath == 'cached':
        assert after[('u', OTHER)][0] == 768 * KiB, after
        assert as_user(USER, 'out = fill(%r, %d)'
                       % (mnt / 'pub/b', 768 * KiB)) == [768 * KiB, 'ok']
        # OTHER is now at 768 KiB of 1 MiB.
        done, res = as_user(OTHER, 'out = fill(%r, %d)'
                            % (mnt / 'pub/c', 768 * KiB))
        assert res == 'EDQUOT' and done <= 256 * KiB, (done, res)
    else:
        assert after[('u', USER)][0] == 768 * KiB, after


# --------------------------------------------------------------------------
# Per-user section limit

@pytest.mark.file_backed
def test_user_inode_limit(mount_factory, datapath, tmp_path):
    """Sections past a user's limit: EDQUOT, for creates and for
    file-backed sections alike; a directory counts as one; an unlink
    frees one; another user is not held to it."""
    mnt = shared(mount_factory, datapath, 'usrquota_inode_hardlimit=4')
    target = os.path.join(util.TEST_DIR, 'conftest.py')
    out = as_user(USER, '''
pub = %r
out = [attempt(create, pub + '/1'), attempt(create, pub + '/2'),
       attempt(os.mkdir, pub + '/d'),
       attempt(os.symlink, %r, pub + '/3'),
       attempt(create, pub + '/4'), attempt(os.symlink, %r, pub + '/5'),
       attempt(os.truncate, pub + '/4', 0)]
os.unlink(pub + '/1')
''' % (mnt / 'pub', target, target))
    assert out == ['ok', 'ok', 'ok', 'ok', 'EDQUOT', 'EDQUOT', 'ENOENT'], out
    # The unlinked section is gone once the kernel forgets it.
    assert util.wait_for(lambda: as_user(
        USER, 'out = attempt(create, %r)' % (mnt / 'pub/6')) == 'ok')
    assert sorted(os.listdir(mnt / 'pub')) == ['2', '3', '6', 'd']
    assert as_user(OTHER, 'out = attempt(create, %r)' % (mnt / 'pub/o')) \
        == 'ok'
    # Root is not held to a limit.
    for i in range(5):
        open(mnt / ('pub/r%d' % i), 'w').close()


# --------------------------------------------------------------------------
# Per-group limits

def test_group_inode_limit(mount_factory, datapath):
    """Two users of one group share its section limit."""
    mnt = shared(mount_factory, datapath, 'grpquota_inode_hardlimit=2')
    pub = mnt / 'pub'
    assert as_user(USER, 'out = attempt(create, %r)' % (pub + '/a'),
                   gid=GROUP) == 'ok'
    assert as_user(OTHER, 'out = [attempt(create, %r), attempt(create, %r)]'
                   % (pub + '/b', pub + '/c'), gid=GROUP) == ['ok', 'EDQUOT']
    # The same user in another group is free to create.
    assert as_user(OTHER, 'out = attempt(create, %r)' % (pub + '/d')) == 'ok'


def test_group_block_limit_cached(mount_factory):
    """Two users of one group share its byte limit (cached path)."""
    mnt = shared(mount_factory, 'cached', 'grpquota_block_hardlimit=1m')
    pub = mnt / 'pub'
    assert as_user(USER, 'out = fill(%r, %d)' % (pub + '/a', 768 * KiB),
                   gid=GROUP) == [768 * KiB, 'ok']
    done, res = as_user(OTHER, 'out = fill(%r, %d)'
                        % (pub + '/b', 768 * KiB), gid=GROUP)
    assert res == 'EDQUOT' and done <= 256 * KiB, (done, res)
    assert quota_lines(mnt)[('g', GROUP)][0] <= MiB


def test_group_block_limit_passthrough(mount_factory, base_dir):
    """The kernel cannot hold a group to a byte limit on passthrough:
    passthrough=on refuses the mount in one line; auto falls back to the
    cached path, says so once, and enforces it there."""
    mp = os.path.join(base_dir, 'on')
    os.mkdir(mp)
    res = util.run_daemon(['-f', '-o', 'passthrough=on,'
                           'grpquota_block_hardlimit=1m', mp])
    assert res.returncode != 0
    assert 'grpquota_block_hardlimit' in res.stderr, res.stderr
    assert not util.is_mounted(mp)

    mnt = mount_factory(None, options=['allow_other', 'passthrough=auto',
                                       'grpquota_block_hardlimit=1m'])
    os.mkdir(mnt / 'pub')
    os.chmod(mnt / 'pub', 0o1777)
    done, res = as_user(USER, 'out = fill(%r, 2 * %d)'
                        % (mnt / 'pub/a', MiB), gid=GROUP)
    assert res == 'EDQUOT', (done, res)
    assert mnt.stderr.count('grpquota_block_hardlimit') == 1, mnt.stderr


def test_size_with_user_block_limit_on_passthrough(base_dir):
    """size= and a user byte limit cannot both be held by the kernel on
    passthrough: passthrough=on refuses the mount in one line."""
    mp = os.path.join(base_dir, 'on')
    os.mkdir(mp)
    res = util.run_daemon(['-f', '-o', 'passthrough=on,size=4m,'
                           'usrquota_block_hardlimit=1m', mp])
    assert res.returncode != 0
    assert 'usrquota_block_hardlimit' in res.stderr, res.stderr
    assert not util.is_mounted(mp)


# --------------------------------------------------------------------------
# The descriptor budget

@pytest.fixture
def limited_mnt(request, base_dir, datapath):
    mp = os.path.join(base_dir, 'mnt')
    os.mkdir(mp)
    m = util.LimitedMount(mp, datapath=datapath, nofile=200,
                          options=['allow_other'],
                          writeback=util.writeback_allowed(request.node))
    m.start()
    os.mkdir(m / 'pub')
    os.chmod(m / 'pub', 0o1777)
    yield m
    rep = getattr(request.node, 'rep_call', None)
    problems = m.finish(test_failed=rep is None or rep.failed)
    if problems:
        pytest.fail('teardown: ' + '\n'.join(problems), pytrace=False)


@pytest.mark.file_backed
def test_fd_budget(limited_mnt):
    """With 200 descriptors, a user makes sections until ENOSPC (never
    EMFILE), as many as df -i said were free; root then still makes a
    section and a file-backed one, and lists the mount."""
    mnt = limited_mnt
    mnt.expect_stderr(r'descriptor')
    ffree = as_user(USER, 'out = os.statvfs(%r).f_ffree' % mnt.path)
    assert 0 < ffree < 200, ffree
    out = as_user(USER, '''
made, res = 0, 'ok'
while made < 1000:
    try:
        create('%s/s%%d' %% made)
    except OSError as e:
        res = name(e)
        break
    made += 1
out = [made, res, os.statvfs(%r).f_ffree]
''' % (mnt / 'pub', mnt.path))
    made, res, left = out
    assert res == 'ENOSPC', out
    assert abs(made - ffree) <= 2, (made, ffree)
    assert left == 0, out
    # Root still has room, for a section and a file-backed one.
    with open(mnt / 'root-section', 'wb') as f:
        f.write(b'root')
    target = os.path.join(util.TEST_DIR, 'conftest.py')
    os.symlink(target, mnt / 'root-file')
    assert os.getxattr(mnt / 'root-file', 'user.sectionfs.kind') == b'file'
    assert len(os.listdir(mnt / 'pub')) == made
    # Freeing sections gives the room back.
    for i in range(10):
        os.unlink(mnt / ('pub/s%d' % i))
    assert as_user(USER, 'out = attempt(create, %r)' % (mnt / 'pub/again')) \
        == 'ok'


# --------------------------------------------------------------------------
# sectionctl quota

def sectionctl(*args, uid=None):
    argv = [util.SECTIONCTL] + list(args)
    if uid is not None:
        argv = util.as_user_argv(uid) + argv
    return subprocess.run(argv, capture_output=True, text=True,
                          timeout=util.PATIENCE)


def test_sectionctl_quota(mount_factory, datapath):
    """sectionctl quota: root sees every owner's usage and limits, a user
    their own lines only."""
    mnt = shared(mount_factory, datapath, 'usrquota_block_hardlimit=1m',
                 'usrquota_inode_hardlimit=5')
    assert as_user(USER, 'out = fill(%r, %d)' % (mnt / 'pub/a', 64 * KiB)) \
        == [64 * KiB, 'ok']
    assert as_user(OTHER, 'out = attempt(create, %r)' % (mnt / 'pub/b')) \
        == 'ok'
    res = sectionctl('quota', mnt.path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ['TYPE', 'ID', 'NAME', 'BYTES', 'LIMIT',
                                'INODES', 'LIMIT'], lines
    rows = {(r.split()[0], r.split()[1]): r.split() for r in lines[1:]}
    assert rows[('user', str(USER))][3:] == [str(64 * KiB), str(MiB), '1',
                                             '5'], rows
    assert rows[('user', str(OTHER))][5] == '1', rows
    mine = sectionctl('quota', mnt.path, uid=USER)
    assert mine.returncode == 0, mine.stderr
    ids = {(r.split()[0], r.split()[1]) for r in mine.stdout.splitlines()[1:]}
    assert ('user', str(USER)) in ids and ('user', str(OTHER)) not in ids, \
        mine.stdout


# --------------------------------------------------------------------------
# Every node counts

#: Makes nodes of every kind in pub, in turn, until count or an error:
#: [made, 'ok' or errno].  Relative symlinks are ordinary symbolic links.
_MAKE_NODES = r'''
def make_nodes(pub, prefix, count):
    kinds = [lambda p: os.mkdir(p),
             lambda p: os.mknod(p, 0o010600),
             lambda p: os.symlink('x' * 100, p),
             lambda p: os.mknod(p, 0o140600)]
    made = 0
    while made < count:
        try:
            kinds[made % len(kinds)]('%s/%s%d' % (pub, prefix, made))
        except OSError as e:
            return [made, name(e)]
        made += 1
    return [made, 'ok']
'''


def user_inodes(mnt, uid):
    """The inodes charged to uid (0 when it has no line)."""
    return quota_lines(mnt).get(('u', uid), [0, 0])[1]


def test_every_node_counts(mount_factory, datapath):
    """usrquota_inode_hardlimit= counts every node its user holds, as
    tmpfs's inode quotas do: sections, directories, FIFOs, sockets,
    relative symlinks and device nodes alike, EDQUOT at exactly the
    limit; rmdir and unlink give them back; root is not held to it."""
    mnt = shared(mount_factory, datapath, 'usrquota_inode_hardlimit=10')
    pub = mnt / 'pub'
    out = as_user(USER, _MAKE_NODES + '''
out = [attempt(create, %r), attempt(create, %r), make_nodes(%r, 'n', 100),
       attempt(create, %r), attempt(os.mkdir, %r)]
''' % (pub + '/s1', pub + '/s2', pub, pub + '/s3', pub + '/d'))
    assert out == ['ok', 'ok', [8, 'EDQUOT'], 'EDQUOT', 'EDQUOT'], out
    assert quota_lines(mnt)[('u', USER)][1:] == [10, None, 10]
    # A device node (root's to make) given to the user counts too.
    os.mknod(pub + '/dev', 0o020600, os.makedev(1, 3))
    os.chown(pub + '/dev', USER, -1)
    assert user_inodes(mnt, USER) == 11
    # The user's nodes go: each kind gives its inode back.
    as_user(USER, '''
for i in range(8):
    p = %r + '/n%%d' %% i
    (os.rmdir if i %% 4 == 0 else os.unlink)(p)
os.unlink(%r)
out = None
''' % (pub, pub + '/dev'))
    assert util.wait_for(lambda: user_inodes(mnt, USER) == 2)
    assert as_user(USER, _MAKE_NODES + 'out = make_nodes(%r, "m", 100)'
                   % pub) == [8, 'EDQUOT']
    # Root is never held to a limit.
    for i in range(12):
        os.mkdir(pub + '/r%d' % i)


def test_chown_moves_nodes(mount_factory, datapath):
    """chown moves a node's inode from one owner to another, for every
    kind of node: the old owner may make more, the new one fewer."""
    mnt = shared(mount_factory, datapath, 'usrquota_inode_hardlimit=4')
    pub = mnt / 'pub'
    assert as_user(USER, _MAKE_NODES + 'out = make_nodes(%r, "n", 100)'
                   % pub) == [4, 'EDQUOT']
    for i in range(4):
        os.chown(pub + '/n%d' % i, OTHER, -1, follow_symlinks=False)
    assert user_inodes(mnt, USER) == 0
    assert user_inodes(mnt, OTHER) == 4
    assert as_user(OTHER, 'out = attempt(os.mkdir, %r)' % (pub + '/o')) \
        == 'EDQUOT'
    assert as_user(USER, _MAKE_NODES + 'out = make_nodes(%r, "m", 100)'
                   % pub) == [4, 'EDQUOT']
    # Given back: the new owner has room again, the old one is past its
    # limit (root may give anyone anything).
    os.chown(pub + '/n0', USER, -1)
    assert as_user(OTHER, 'out = attempt(os.mkdir, %r)' % (pub + '/o')) \
        == 'ok'
    assert as_user(USER, 'out = attempt(os.mkdir, %r)' % (pub + '/x')) \
        == 'EDQUOT'
    assert user_inodes(mnt, USER) == 5


def test_group_counts_nodes_setgid(mount_factory, datapath):
    """grpquota_inode_hardlimit= charges a node to the group it gets: in
    a set-group-ID directory, that directory's group (which holds one
    already: the directory, given to it by chgrp)."""
    mnt = shared(mount_factory, datapath, 'grpquota_inode_hardlimit=3')
    sg = mnt / 'sg'
    os.mkdir(sg)
    os.chown(sg, 0, GROUP)
    os.chmod(sg, 0o2777)
    out = as_user(USER, _MAKE_NODES + '''
out = [make_nodes(%r, 'n', 100), attempt(create, %r),
       make_nodes(%r, 'n', 3)]
''' % (sg, sg + '/s', mnt / 'pub'))
    assert out == [[2, 'EDQUOT'], 'EDQUOT', [3, 'ok']], out
    assert quota_lines(mnt)[('g', GROUP)][1] == 3
    assert os.stat(sg + '/n0').st_gid == GROUP


# --------------------------------------------------------------------------
# The mount's bound on nodes, -o nr_inodes

def test_nr_inodes_bounds_every_user(mount_factory, datapath):
    """With nr_inodes=20 a user makes nodes of any kind until ENOSPC,
    exactly as many as statfs said were free; the last one (1/64, at
    least one) is root's; removing a name gives it back."""
    mnt = shared(mount_factory, datapath, 'nr_inodes=20')
    pub = str(mnt / 'pub')
    ffree = as_user(USER, 'out = os.statvfs(%r).f_ffree' % pub)
    made = as_user(USER, """
out = []
for i in range(40):
    kind = ('file', 'dir', 'fifo', 'link')[i %% 4]
    p = os.path.join(%r, 'n%%d' %% i)
    res = attempt({'file': create, 'dir': os.mkdir, 'fifo': os.mkfifo,
                   'link': lambda p: os.symlink('n0', p)}[kind], p)
    out.append(res)
    if res != 'ok':
        break
""" % pub)
    # The root and pub are two of the 20; one is root's reserve.
    assert made == ['ok'] * 17 + ['ENOSPC'], made
    assert ffree == 17
    assert as_user(USER, 'out = os.statvfs(%r).f_ffree' % pub) == 0
    with open(mnt / 'roots', 'wb'):
        pass
    with pytest.raises(OSError) as exc:
        os.mkdir(mnt / 'more')
    assert exc.value.errno == errno.ENOSPC
    os.unlink(mnt / 'roots')
    os.unlink(os.path.join(pub, 'n0'))
    # A name's node goes once the kernel forgets it, a moment after.
    assert util.wait_for(lambda: as_user(
        USER, 'out = attempt(create, %r)' % os.path.join(pub, 'again'))
        == 'ok')


def test_nr_inodes_counts_hard_links(mount_factory, datapath):
    """Every hard link past a file's first name takes one of nr_inodes,
    as on tmpfs (each is a name the daemon keeps): a user's links stop
    with ENOSPC where statfs said, where before they went on without
    bound; unlinking one gives it back."""
    mnt = shared(mount_factory, datapath, 'nr_inodes=20')
    pub = str(mnt / 'pub')
    out = as_user(USER, """
create(%r)
free = os.statvfs(%r).f_ffree
made, res = 0, 'ok'
for i in range(100):
    res = attempt(os.link, %r, os.path.join(%r, 'l%%d' %% i))
    if res != 'ok':
        break
    made += 1
out = [free, made, res, os.statvfs(%r).f_ffree]
""" % (pub + '/f', pub, pub + '/f', pub, pub))
    # The root, pub and f are three of the 20; one is root's reserve.
    assert out == [16, 16, 'ENOSPC', 0], out
    assert os.stat(pub + '/f').st_nlink == 17
    os.unlink(pub + '/l0')
    assert as_user(USER, 'out = attempt(os.link, %r, %r)'
                   % (pub + '/f', pub + '/again')) == 'ok'


# --------------------------------------------------------------------------
# A long symbolic link's target

#: Makes relative symlinks with a target of length bytes in pub until
#: count or an error: [made, 'ok' or errno].
_MAKE_LINKS = r'''
def make_links(pub, prefix, length, count):
    made = 0
    while made < count:
        try:
            os.symlink('t' * length, '%s/%s%d' % (pub, prefix, made))
        except OSError as e:
            return [made, name(e)]
        made += 1
    return [made, 'ok']
'''


def test_long_symlink_targets_count_against_size(mount_factory, datapath):
    """A relative symlink whose target is 128 bytes or more takes a page,
    as on tmpfs: under size= another user's long links stop with ENOSPC
    once the cap is full (the daemon keeping 4 KiB per link without
    bound before), df counts them, short ones still fit, and unlinking
    gives the room back."""
    mnt = shared(mount_factory, datapath, 'size=256k')
    pub = mnt / 'pub'
    base = util.used(mnt.path)
    out = as_user(USER, _MAKE_LINKS + '''
out = [make_links(%r, 'l', 4000, 1000), make_links(%r, 's', 100, 3)]
''' % (pub, pub))
    assert out == [[64, 'ENOSPC'], [3, 'ok']], out
    assert util.used(mnt.path) == base + 256 * KiB
    assert os.readlink(pub + '/l0') == 't' * 4000
    as_user(USER, '''
for i in range(64):
    os.unlink(%r + '/l%%d' %% i)
out = None
''' % pub)
    assert util.wait_for(lambda: util.used(mnt.path) == base)
    assert as_user(USER, _MAKE_LINKS + 'out = make_links(%r, "m", 128, 100)'
                   % pub) == [64, 'ENOSPC']


def test_long_symlink_targets_count_against_user_blocks(mount_factory,
                                                        datapath):
    """Under usrquota_block_hardlimit= a user's long symlinks count
    against their bytes (EDQUOT past the limit), chown moves them, and
    root is not held to it."""
    mnt = shared(mount_factory, datapath, 'usrquota_block_hardlimit=64k')
    pub = mnt / 'pub'
    out = as_user(USER, _MAKE_LINKS + 'out = make_links(%r, "l", 200, 100)'
                  % pub)
    assert out == [16, 'EDQUOT'], out
    assert quota_lines(mnt)[('u', USER)][0] == 64 * KiB
    os.chown(pub + '/l0', OTHER, -1, follow_symlinks=False)
    assert quota_lines(mnt)[('u', USER)][0] == 60 * KiB
    assert quota_lines(mnt)[('u', OTHER)][0] == 4 * KiB
    for i in range(20):
        os.symlink('r' * 200, pub + '/r%d' % i)
