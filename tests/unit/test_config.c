/* The configuration tree: keys, values, config files, and the size and
 * number parsers behind --mem and --cpus. */
#include "unit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

static void test_set_get_override(void **state)
{
	struct config c;

	config_init(&c);
	assert_null(config_get(&c, "vm.mem"));
	assert_int_equal(config_set(&c, "vm.mem", "512M"), 0);
	assert_int_equal(config_set(&c, "vm.cpus", "2"), 0);
	assert_string_equal(config_get(&c, "vm.mem"), "512M");
	assert_string_equal(config_get(&c, "vm.cpus"), "2");
	/* Later settings override earlier ones without duplicating the key. */
	assert_int_equal(config_set(&c, "vm.mem", "1G"), 0);
	assert_string_equal(config_get(&c, "vm.mem"), "1G");
	assert_int_equal(c.nr, 2);
	/* Values are copied. */
	{
		char buf[] = "console=ttyS0";

		assert_int_equal(config_set(&c, "boot.cmdline", buf), 0);
		buf[0] = 'X';
		assert_string_equal(config_get(&c, "boot.cmdline"), "console=ttyS0");
	}
	assert_int_equal(config_set(&c, "boot.empty", ""), 0);
	assert_string_equal(config_get(&c, "boot.empty"), "");
	assert_int_equal(config_set(&c, "vm.x", NULL), -EINVAL);
	assert_null(config_get(&c, "vm"));
	assert_null(config_get(&c, "vm.mem.x"));
	config_free(&c);
	assert_int_equal(c.nr, 0);
}

static void test_key_validation(void **state)
{
	static const char *const bad[] = { "", ".a", "a.", "a..b", "A.b", "a b", "vm.Mem",
					   "a.b ", "a=b", ".", "vm/mem" };
	static const char *const good[] = { "a", "vm.mem", "a.b.c", "net0.mac-addr", "x_1.y-2",
					    "0.9" };
	struct config c;

	config_init(&c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (config_set(&c, bad[i], "v") != -EINVAL)
			fail_msg("key '%s' was accepted", bad[i]);
	}
	assert_int_equal(c.nr, 0);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (config_set(&c, good[i], "v") != 0)
			fail_msg("key '%s' was rejected", good[i]);
	}
	assert_int_equal(c.nr, (int)(sizeof(good) / sizeof(good[0])));
	config_free(&c);
}

static void test_many_keys_sorted(void **state)
{
	enum { N = 500 };
	struct config c;
	char key[32], val[32];

	config_init(&c);
	/* Insert in a scrambled order (i * 7919 mod N visits every i). */
	for (int k = 0; k < N; k++) {
		int i = (k * 7919) % N;

		snprintf(key, sizeof(key), "sec%d.key%d", i % 13, i);
		snprintf(val, sizeof(val), "%d", i);
		assert_int_equal(config_set(&c, key, val), 0);
	}
	assert_int_equal(c.nr, N);
	for (int i = 1; i < c.nr; i++)
		assert_true(strcmp(c.e[i - 1].key, c.e[i].key) < 0);
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "sec%d.key%d", i % 13, i);
		snprintf(val, sizeof(val), "%d", i);
		assert_non_null(config_get(&c, key));
		assert_string_equal(config_get(&c, key), val);
	}
	assert_null(config_get(&c, "sec0.key1"));
	config_free(&c);
}

static char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/tarn-test-config-XXXXXX");
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void test_load_file(void **state)
{
	struct config c;
	char err[256] = "";
	char *path = write_tmp("# a tarn config\n"
			       "\n"
			       "vm.mem=256M\n"
			       "   vm.cpus   =   4   \n"
			       "\t# indented comment\n"
			       "boot.cmdline = console=ttyS0 quiet\n"
			       "   \n"
			       "vm.mem = 1G\n"
			       "boot.kernel = /k"); /* no final newline */

	config_init(&c);
	assert_int_equal(config_load_file(&c, path, err, sizeof(err)), 0);
	assert_string_equal(config_get(&c, "vm.mem"), "1G");
	assert_string_equal(config_get(&c, "vm.cpus"), "4");
	/* Only the first '=' separates: the value keeps its own. */
	assert_string_equal(config_get(&c, "boot.cmdline"), "console=ttyS0 quiet");
	assert_string_equal(config_get(&c, "boot.kernel"), "/k");
	assert_int_equal(c.nr, 4);
	config_free(&c);
	unlink(path);
	free(path);
}

static void test_load_file_errors(void **state)
{
	struct config c;
	char err[256], want[300];
	char *path = write_tmp("vm.mem = 1G\n# fine\n\nthis line has no equals sign\nvm.cpus = 2\n");

	config_init(&c);
	err[0] = '\0';
	assert_int_equal(config_load_file(&c, path, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:4:", path);
	if (strncmp(err, want, strlen(want)))
		fail_msg("error '%s' does not start with '%s'", err, want);
	config_free(&c);
	unlink(path);
	free(path);

	path = write_tmp("vm.mem = 1G\nVM.Cpus = 2\n");
	config_init(&c);
	err[0] = '\0';
	assert_int_equal(config_load_file(&c, path, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:2:", path);
	if (strncmp(err, want, strlen(want)))
		fail_msg("error '%s' does not start with '%s'", err, want);
	assert_non_null(strstr(err, "VM.Cpus"));
	config_free(&c);
	unlink(path);
	free(path);

	path = write_tmp(" = value\n");
	config_init(&c);
	err[0] = '\0';
	assert_int_equal(config_load_file(&c, path, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:1:", path);
	if (strncmp(err, want, strlen(want)))
		fail_msg("error '%s' does not start with '%s'", err, want);
	config_free(&c);
	unlink(path);
	free(path);

	config_init(&c);
	err[0] = '\0';
	assert_int_equal(config_load_file(&c, "/nonexistent/tarn.conf", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/tarn.conf"));
	config_free(&c);
}

static void test_parse_size(void **state)
{
	static const struct {
		const char *s;
		uint64_t want;
	} ok[] = {
		{ "512M", 512ULL << 20 },
		{ "2G", 2ULL << 30 },
		{ "1024", 1024ULL << 20 }, /* default unit MiB */
		{ "4KiB", 4096 },
		{ "4k", 4096 },
		{ "1T", 1ULL << 40 },
		{ "16MB", 16ULL << 20 },
		{ "0", 0 },
		{ "8B", 8 },
	};
	static const char *const bad[] = { "", "M", "12X", "-1", "99999999999T", "1.5G", " 1G",
					   "1G ", "1GG", "1Gx", "18446744073709551616", "0x10",
					   "+1", "1P", "8BiB" };
	uint64_t v;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		v = 12345;
		if (parse_size(ok[i].s, 1ULL << 20, &v))
			fail_msg("parse_size(\"%s\") failed", ok[i].s);
		if (v != ok[i].want)
			fail_msg("parse_size(\"%s\") = %llu, want %llu", ok[i].s,
				 (unsigned long long)v, (unsigned long long)ok[i].want);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 12345;
		if (parse_size(bad[i], 1ULL << 20, &v) != -EINVAL)
			fail_msg("parse_size(\"%s\") accepted (%llu)", bad[i], (unsigned long long)v);
		assert_int_equal(v, 12345);
	}
	assert_int_equal(parse_size(NULL, 1, &v), -EINVAL);
	/* 16 EiB - 1 TiB fits, 16 EiB does not. */
	assert_int_equal(parse_size("16777215T", 1, &v), 0);
	assert_int_equal(v, 16777215ULL << 40);
	assert_int_equal(parse_size("16777216T", 1, &v), -EINVAL);
	/* The default unit also overflows cleanly. */
	assert_int_equal(parse_size("17592186044416", 1ULL << 20, &v), -EINVAL);
	assert_int_equal(parse_size("1024", 1, &v), 0);
	assert_int_equal(v, 1024);
}

static void test_parse_uint(void **state)
{
	uint64_t v = 7;

	assert_int_equal(parse_uint("1", 1, 255, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(parse_uint("255", 1, 255, &v), 0);
	assert_int_equal(v, 255);
	v = 7;
	assert_int_equal(parse_uint("0", 1, 255, &v), -EINVAL);
	assert_int_equal(parse_uint("256", 1, 255, &v), -EINVAL);
	assert_int_equal(parse_uint("", 0, 10, &v), -EINVAL);
	assert_int_equal(parse_uint("-1", 0, UINT64_MAX, &v), -EINVAL);
	assert_int_equal(parse_uint("4x", 0, 10, &v), -EINVAL);
	assert_int_equal(parse_uint(" 4", 0, 10, &v), -EINVAL);
	assert_int_equal(parse_uint("18446744073709551616", 0, UINT64_MAX, &v), -EINVAL);
	assert_int_equal(parse_uint(NULL, 0, 10, &v), -EINVAL);
	assert_int_equal(v, 7);
	assert_int_equal(parse_uint("18446744073709551615", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, UINT64_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_get_override),
		cmocka_unit_test(test_key_validation),
		cmocka_unit_test(test_many_keys_sorted),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_load_file_errors),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_uint),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
