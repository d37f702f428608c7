/* journal_dump.c — mcpfs-journal-dump: prints and verifies context journals.
 *
 *   mcpfs-journal-dump [-v] [--verify] FILE...
 *
 * Prints every record of each journal (offset, type, payload bytes, payload) and
 * where corrupt or torn bytes are, then one summary line from the scan's report.
 * Each payload is checked with the loader's decoder (record.h): one the loader
 * would skip as a bad record is reported after it, and counted.
 * Exit status: 0 every file clean, 1 something damaged, 2 a usage or I/O error.
 * It only reads: repairing is what the daemon does when it opens a journal.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/journal.h"
#include "mcpfs/record.h"
#include "mcpfs/utf8.h"

#define SHOW_MAX 120 /* payload bytes shown without -v: one terminal line, roughly */

enum { EXIT_CLEAN = 0, EXIT_DAMAGED = 1, EXIT_TROUBLE = 2 };

struct dump {
	bool verbose;	  /* whole payloads */
	bool verify;	  /* summary lines only */
	uint64_t next;	  /* where the next record should start: a gap is corrupt bytes */
	uint64_t invalid; /* framed soundly, but a payload the loader skips */
};

static const char *type_name(uint16_t type, char *buf, size_t n)
{
	const char *name = record_type_name(type);
	if (name)
		return name;
	snprintf(buf, n, "type-%u", (unsigned)type);
	return buf;
}

/* Payloads are JSON text and are printed as they are, except that control bytes
 * (and every byte >= 0x80 when the shown part is not UTF-8) become \xNN: a
 * corrupt payload must not drive the terminal. */
static void print_payload(const char *p, size_t len, bool verbose)
{
	size_t n = verbose || len <= SHOW_MAX ? len : utf8_complete_prefix(p, SHOW_MAX);
	bool raw_high = utf8_valid(p, n);

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c < 0x20 || c == 0x7f || (c >= 0x80 && !raw_high))
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	if (n < len)
		printf(" ... (%zu more bytes)", len - n);
	putchar('\n');
}

static int on_record(void *data, uint16_t type, const void *payload, size_t len, uint64_t offset)
{
	struct dump *d = data;
	char buf[16];
	struct record rec = {0};
	const char *why = NULL;
	int r = record_decode(&rec, type, payload, len, &why);

	record_release(&rec);
	if (r == -ENOMEM)
		return r;
	if (r == -EINVAL)
		d->invalid++;
	if (d->verify)
		return 0;
	if (offset > d->next)
		printf("%10" PRIu64 "  %-10s %9" PRIu64 "  bytes skipped\n", d->next, "(corrupt)",
		       offset - d->next);
	printf("%10" PRIu64 "  %-10s %9zu  ", offset, type_name(type, buf, sizeof(buf)), len);
	print_payload(payload, len, d->verbose);
	if (r == -EINVAL || r == RECORD_IGNORED)
		printf("%10" PRIu64 "  %-10s %9s  %s by the loader: %s\n", offset,
		       r == -EINVAL ? "(invalid)" : "(ignored)", "",
		       r == -EINVAL ? "a bad record, skipped" : "ignored", why);
	d->next = offset + journal_frame_size(len);
	return 0;
}

static int dump_file(const char *path, struct dump *d, bool heading)
{
	struct journal_report rep;
	int r;

	d->next = 0;
	d->invalid = 0;
	if (heading && !d->verify)
		printf("==> %s <==\n", path);
	r = journal_scan(path, on_record, d, &rep);
	if (r < 0) {
		fflush(stdout);
		fprintf(stderr, "mcpfs-journal-dump: cannot read '%s': %s\n", path,
			r == -EINVAL ? "not a regular file" : strerror(-r));
		return EXIT_TROUBLE;
	}
	if (!d->verify && rep.torn_bytes)
		printf("%10" PRIu64 "  %-10s %9" PRIu64 "  bytes cut off or unreadable\n",
		       rep.good_end, "(torn)", rep.torn_bytes);
	printf("%s: records %" PRIu64 ", bad records %" PRIu64 " (%" PRIu64
	       " bytes skipped), torn bytes %" PRIu64 ", good end %" PRIu64,
	       path, rep.records, rep.bad_records, rep.skipped_bytes, rep.torn_bytes, rep.good_end);
	if (d->invalid) /* shown only then: a clean journal's line stays as it was */
		printf(", invalid payloads %" PRIu64, d->invalid);
	putchar('\n');
	return rep.bad_records || rep.torn_bytes || d->invalid ? EXIT_DAMAGED : EXIT_CLEAN;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mcpfs-journal-dump [-v] [--verify] FILE...\n"
		"Prints the records of mcpfs context journals and checks their framing\n"
		"and each payload as the daemon's loader reads it.\n"
		"\n"
		"  -v, --verbose  print whole payloads (default: the first %d bytes)\n"
		"      --verify   print only one summary line per file\n"
		"  -h, --help     this text\n"
		"      --version  the mcpfs version\n"
		"\n"
		"Exit status: 0 all clean, 1 a bad record, a payload the loader skips\n"
		"or a torn tail was found,\n"
		"2 a usage or read error.\n",
		SHOW_MAX);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"verbose", no_argument, NULL, 'v'},
	    {"verify", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'R'},
	    {0},
	};
	struct dump d = {0};
	int c, status = EXIT_CLEAN;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			d.verbose = true;
			break;
		case 'V':
			d.verify = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_CLEAN;
		case 'R':
			printf("mcpfs-journal-dump %s\n", MCPFS_VERSION);
			return EXIT_CLEAN;
		default:
			usage(stderr);
			return EXIT_TROUBLE;
		}
	}
	if (optind == argc) {
		usage(stderr);
		return EXIT_TROUBLE;
	}
	for (int i = optind; i < argc; i++) {
		int r = dump_file(argv[i], &d, argc - optind > 1);

		if (r > status)
			status = r;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "mcpfs-journal-dump: cannot write the output: %s\n",
			strerror(errno));
		return EXIT_TROUBLE;
	}
	return status;
}
