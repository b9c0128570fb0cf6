/*
 * kabi.h - the FUSE kernel ABI sectionfs speaks beyond <linux/fuse.h>.
 *
 * Debian's <linux/fuse.h> describes protocol 7.38; sectionfs asks the
 * kernel for newer things (passthrough, shared maps of direct_io files,
 * io_uring) by writing the wire protocol itself.  Every constant and
 * layout newer than the installed header is here, under the kernel's own
 * name, each marked with the protocol minor that brought it.  Each is
 * guarded: a header that defines it wins, so a newer <linux/fuse.h>
 * replaces these lines without a change to the code that uses them.
 * Layouts the header has in an older form (fuse_init_out, fuse_open_out)
 * get a name of our own, checked against the header's size.
 */
#ifndef SECTIONFS_KABI_H
#define SECTIONFS_KABI_H

#include <stdint.h>
#include <sys/ioctl.h>

#include <linux/fuse.h>

/* ---- INIT flags (fuse_init_in/out.flags, and flags2 = bits 32..63) ---- */

/* 7.33: the daemon clears set-ID bits on write, chown and truncate. */
#ifndef FUSE_HANDLE_KILLPRIV_V2
#define FUSE_HANDLE_KILLPRIV_V2	(1 << 28)
#endif

/* 7.36: flags2 is present (fuse_init_in/out grew). */
#ifndef FUSE_INIT_EXT
#define FUSE_INIT_EXT		(1 << 30)
#endif

/* 7.39: files opened with FOPEN_DIRECT_IO may be mapped shared. */
#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP	(1ULL << 36)
#endif

/* 7.40: kernel passthrough to a backing file. */
#ifndef FUSE_PASSTHROUGH
#define FUSE_PASSTHROUGH	(1ULL << 37)
#endif

/* 7.42: requests over io_uring. */
#ifndef FUSE_OVER_IO_URING
#define FUSE_OVER_IO_URING	(1ULL << 41)
#endif

/* 7.41: the kernel sends again, on FUSE_NOTIFY_RESEND, every request a
 * server read and did not answer, bit 63 of their unique set. */
#ifndef FUSE_HAS_RESEND
#define FUSE_HAS_RESEND		(1ULL << 39)
#endif
#define KABI_NOTIFY_RESEND	7	/* enum fuse_notify_code */
#define KABI_UNIQUE_RESEND	(1ULL << 63)

/* An INIT flag of 64 as it sits in flags2 (0 for the low 32). */
#define KABI_FLAGS2(flag)	((uint32_t)((uint64_t)(flag) >> 32))

/* ---- OPEN / CREATE ---- */

/* 7.40: this open passes through to fuse_open_out.backing_id. */
#ifndef FOPEN_PASSTHROUGH
#define FOPEN_PASSTHROUGH	(1 << 7)
#endif

/*
 * fuse_init_out as of 7.40: max_stack_depth took unused[0].  Only flags,
 * flags2 and max_stack_depth are ever read or written through it.
 */
struct kabi_init_out {
	uint32_t major;
	uint32_t minor;
	uint32_t max_readahead;
	uint32_t flags;
	uint16_t max_background;
	uint16_t congestion_threshold;
	uint32_t max_write;
	uint32_t time_gran;
	uint16_t max_pages;
	uint16_t map_alignment;
	uint32_t flags2;
	uint32_t max_stack_depth;
	uint32_t unused[6];
};

/* fuse_open_out as of 7.40: backing_id took the padding. */
struct kabi_open_out {
	uint64_t fh;
	uint32_t open_flags;
	int32_t backing_id;
};

_Static_assert(sizeof(struct kabi_init_out) == sizeof(struct fuse_init_out),
	       "7.40 fuse_init_out must keep the 7.38 size");
_Static_assert(sizeof(struct kabi_open_out) == sizeof(struct fuse_open_out),
	       "7.40 fuse_open_out must keep the 7.38 size");

/* ---- /dev/fuse ioctls ---- */

#ifndef FUSE_DEV_IOC_MAGIC
#define FUSE_DEV_IOC_MAGIC	229
#endif

/* 7.40: register and release a passthrough backing file. */
#if FUSE_KERNEL_MINOR_VERSION < 40
struct fuse_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#endif
#ifndef FUSE_DEV_IOC_BACKING_OPEN
#define FUSE_DEV_IOC_BACKING_OPEN \
	_IOW(FUSE_DEV_IOC_MAGIC, 1, struct fuse_backing_map)
#endif
#ifndef FUSE_DEV_IOC_BACKING_CLOSE
#define FUSE_DEV_IOC_BACKING_CLOSE	_IOW(FUSE_DEV_IOC_MAGIC, 2, uint32_t)
#endif

/* ---- FUSE over io_uring (7.42) ---- */

#if FUSE_KERNEL_MINOR_VERSION < 42
#define FUSE_URING_IN_OUT_HEADER_SZ	128
#define FUSE_URING_OP_IN_OUT_SZ		128

/* Per entry: how the kernel and the daemon hand a request over. */
struct fuse_uring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;		/* the request's unique id */
	uint32_t payload_sz;
	uint32_t padding;
	uint64_t reserved;
};

/* The registered header buffer of one ring entry. */
struct fuse_uring_req_header {
	char in_out[FUSE_URING_IN_OUT_HEADER_SZ]; /* fuse_in/out_header */
	char op_in[FUSE_URING_OP_IN_OUT_SZ];	/* the operation's header */
	struct fuse_uring_ent_in_out ring_ent_in_out;
};

/* The command in a 128-byte SQE's cmd area. */
struct fuse_uring_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

enum fuse_uring_cmd {
	FUSE_IO_URING_CMD_INVALID = 0,
	FUSE_IO_URING_CMD_REGISTER = 1,
	FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2,
};
#endif /* FUSE_KERNEL_MINOR_VERSION < 42 */

#endif /* SECTIONFS_KABI_H */
