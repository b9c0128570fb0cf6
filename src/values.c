/*
 * values.c - sizes and seal lists, parsed and written.
 *
 * Owns the two value grammars that both the daemon and sectionctl speak,
 * so that they cannot drift apart.  Nothing here knows where a value
 * came from or what it will change.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sectionfs.h"
#include "values.h"

int parse_size(const char *s, uint64_t percent_of, uint64_t *out)
{
	char *end;
	unsigned long long n;
	uint64_t mult = 1;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (tolower((unsigned char)*end)) {
	case '\0':
		break;
	case 'k': mult = 1ULL << 10; end++; break;
	case 'm': mult = 1ULL << 20; end++; break;
	case 'g': mult = 1ULL << 30; end++; break;
	case 't': mult = 1ULL << 40; end++; break;
	case '%':
		if (end[1] != '\0' || n > 100)
			return -EINVAL;
		*out = percent_of / 100 * n;
		return 0;
	default:
		return -EINVAL;
	}
	if (*end != '\0' || (n && mult > UINT64_MAX / n))
		return -EINVAL;
	*out = n * mult;
	return 0;
}

static const struct {
	const char *word;
	unsigned int seal;
} seal_words[] = {
	{ SECTIONFS_SEAL_GROW, F_SEAL_GROW },
	{ SECTIONFS_SEAL_SHRINK, F_SEAL_SHRINK },
	{ SECTIONFS_SEAL_WRITE, F_SEAL_WRITE },
};

#define N_SEALS (sizeof(seal_words) / sizeof(seal_words[0]))

/* The seal one word of len bytes names, or 0. */
static unsigned int seal_of(const char *word, size_t len)
{
	size_t i;

	for (i = 0; i < N_SEALS; i++)
		if (len == strlen(seal_words[i].word) &&
		    !memcmp(word, seal_words[i].word, len))
			return seal_words[i].seal;
	return 0;
}

int parse_seals(const char *value, size_t len, unsigned int *mask)
{
	unsigned int m = 0, seal;
	size_t pos = 0, n;

	if (len == 0)
		goto out;
	for (;;) {
		for (n = 0; pos + n < len && value[pos + n] != ','; n++)
			;
		seal = seal_of(value + pos, n);
		if (!seal)
			return -EINVAL;	/* unknown or empty word */
		m |= seal;
		pos += n;
		if (pos == len)
			break;
		pos++;			/* the comma; a word must follow */
	}
out:
	*mask = m;
	return 0;
}

int format_seals(unsigned int mask, char *buf, size_t size)
{
	size_t len = 0, i;

	if (size == 0)
		return -ERANGE;
	buf[0] = '\0';
	for (i = 0; i < N_SEALS; i++) {
		int n;

		if (!(mask & seal_words[i].seal))
			continue;
		n = snprintf(buf + len, size - len, "%s%s", len ? "," : "",
			     seal_words[i].word);
		if (n < 0 || (size_t)n >= size - len)
			return -ERANGE;
		len += (size_t)n;
	}
	return (int)len;
}
