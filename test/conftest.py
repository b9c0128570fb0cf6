"""Fixtures of the sectionfs integration suite.

mnt            a fresh sectionfs, once per data path (ids "cached" and
               "passthrough"); yields a util.Mount (.path, .pid, .proc,
               .datapath); always unmounted with fusermount3 -u at teardown,
               after which the daemon must exit 0 and have printed nothing
               alarming (util.ALARMING) that the test did not declare with
               mnt.expect_stderr().
mount_factory  mount(datapath=..., options=..., user=..., mountpoint=...)
               for tests that need their own options, several mounts, or a
               daemon run as another user; every mount it made is torn down
               and judged like mnt's.
shared_mnt     a mount with allow_other and a sticky world-writable 'pub'.
pt_mnt         one passthrough mount, for the tests that only
               mean something on the kernel passthrough path.
base_dir       a fresh directory under /tmp, mode 0755 so that another user
               can reach mount points in it (pytest's tmp_path is 0700).
shm_dir        a fresh directory on a tmpfs (/dev/shm).

Skips are decided by probing (util.*_skip_reason), never by versions.
"""

import os
import shutil
import stat
import tempfile

import pytest

import util


# Make each phase's report reachable from fixtures (as libfuse's conftest).
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, 'rep_' + rep.when, rep)


def _test_failed(request):
    rep = getattr(request.node, 'rep_call', None)
    return rep is None or rep.failed


def pytest_collection_modifyitems(config, items):
    """Skip what this machine cannot run, each with its reason; a test
    given backing files makes file-backed sections."""
    fuse_reason = util.fuse_skip_reason()
    for item in items:
        names = set(item.fixturenames)
        if 'backing' in names:
            item.add_marker(pytest.mark.file_backed)
        if fuse_reason and names & {'mnt', 'mount_factory', 'pt_mnt'}:
            item.add_marker(pytest.mark.skip(reason=fuse_reason))
        if item.get_closest_marker('root') and util.root_skip_reason():
            item.add_marker(pytest.mark.skip(reason=util.root_skip_reason()))
        if item.get_closest_marker('other_user') \
                and util.setpriv_skip_reason():
            item.add_marker(pytest.mark.skip(
                reason=util.setpriv_skip_reason()))


@pytest.fixture
def shm_dir():
    """A directory on a tmpfs (/dev/shm), the reference sectionfs is held
    to and a filesystem other than it; removed after the test."""
    if util.fstype_of('/dev/shm') != 'tmpfs':
        pytest.skip('/dev/shm is not a tmpfs here')
    path = tempfile.mkdtemp(prefix='sectionfs-test-', dir='/dev/shm')
    yield path
    shutil.rmtree(path)


@pytest.fixture
def base_dir():
    path = tempfile.mkdtemp(prefix='sectionfs-test-', dir='/tmp')
    os.chmod(path, 0o755)
    yield path
    # Never descend into something still mounted.
    left = util.mounts_under(path)
    if left:
        pytest.fail('mounts left under %s: %s' % (path, left))
    shutil.rmtree(path)


def pytest_report_header(config):
    """Say which transport this run's mounts use, and whether the cached
    path's use the writeback cache, for the CI log."""
    if util.IO_URING in ('on', 'off'):
        lines = ['sectionfs: every mount with io_uring=%s' % util.IO_URING]
    else:
        lines = ['sectionfs: io_uring as the daemon decides '
                 '(fuse enable_uring=%s)' % util.uring_param()]
    if util.WRITEBACK:
        lines.append('sectionfs: cached-path mounts without size= with '
                     'writeback_cache')
    return lines


@pytest.fixture(scope='session', autouse=True)
def io_uring_run():
    """A SECTIONFS_IO_URING=on run serves every mount over io_uring: the
    fuse module must offer it for the whole session."""
    if util.IO_URING != 'on':
        yield
        return
    reason = util.uring_skip_reason()
    if util.VALGRIND:
        reason = 'valgrind 3.19 hangs a daemon serving io_uring'
    if reason:
        pytest.exit('SECTIONFS_IO_URING=on: ' + reason, returncode=4)
    with util.enable_uring('Y'):
        yield


@pytest.fixture
def mount_factory(request, base_dir):
    made = []

    def mount(datapath='cached', options=(), user=None, mountpoint=None,
              wait=True, flags=()):
        if mountpoint is None:
            mountpoint = os.path.join(base_dir, 'mnt%d' % len(made))
        if util.VALGRIND and datapath == 'passthrough' and \
                any(o.startswith('size=') for o in options):
            pytest.skip('valgrind does not implement fsopen(2), which a '
                        'size cap with passthrough needs')
        os.makedirs(mountpoint, exist_ok=True)
        if user is not None:
            os.chown(mountpoint, user, user)
        m = util.Mount(mountpoint, datapath=datapath, options=options,
                       user=user, flags=flags,
                       writeback=util.writeback_allowed(request.node))
        made.append(m)
        return m.start(wait=wait)

    yield mount

    problems = []
    failed = _test_failed(request)
    for m in reversed(made):
        problems += m.finish(test_failed=failed)
    if problems:
        pytest.fail('teardown: ' + '\n'.join(problems), pytrace=False)


@pytest.fixture(params=list(util.DATAPATHS), ids=list(util.DATAPATHS))
def datapath(request):
    return request.param


@pytest.fixture
def mnt(mount_factory, datapath):
    yield mount_factory(datapath)


@pytest.fixture
def shared_mnt(mount_factory, datapath):
    """A mount other users may use (allow_other), once per data path, with
    a world-writable sticky directory 'pub'."""
    m = mount_factory(datapath, options=['allow_other'])
    os.mkdir(m / 'pub')
    os.chmod(m / 'pub', 0o1777)
    return m


@pytest.fixture
def pt_mnt(mount_factory):
    yield mount_factory('passthrough')


@pytest.fixture
def dev_fuse_for_everyone():
    """/dev/fuse mode 0666 for the test, its old mode restored after."""
    if util.root_skip_reason():
        pytest.skip(util.root_skip_reason())
    old = stat.S_IMODE(os.stat('/dev/fuse').st_mode)
    os.chmod('/dev/fuse', 0o666)
    try:
        yield
    finally:
        os.chmod('/dev/fuse', old)
