// Package xlcfg reads, edits and writes Xen xl domain configuration files
// (xl.cfg(5)) and the disk specification strings inside them
// (xl-disk-configuration(5)).
//
// The parser is lossless: a [File] keeps every byte of its input (comments,
// blank lines, odd spacing, both quote styles, lists spread over several
// lines, trailing commas and ";" separators), so [File.Bytes] returns the input
// unchanged, and edits ([File.Set], [File.Delete], [Rewrite]) replace only the
// bytes of the values they change.
//
// We wrote our own parser instead of using a library because no Go library
// parses this format, and because xl's grammar is small but idiosyncratic: it
// is defined by a flex lexer and a bison grammar in Xen's
// tools/libs/util (libxlu_cfg_l.l, libxlu_cfg_y.y, libxlu_cfg.c and, for disk
// specs, libxlu_disk_l.l). The code here follows those files rule by rule so
// that it accepts exactly what xl accepts:
//
//   - keys match [a-z][._0-9a-z]*; numbers match [0-9][0-9a-fx]* and are kept
//     as text (xl converts them with strtol base 0 when a number is wanted);
//   - strings use single or double quotes, may not span lines, and know the
//     escapes \" \' \\ \a \b \f \n \r \t \v. xl's numeric escapes are broken
//     upstream (\x always fails; \NNN consumes digits but stores nothing), so
//     they are rejected here, and [Quote] never produces them;
//   - statements end at a newline or ";"; a comment runs from "#" to the end of
//     the line and must be followed by a newline (xl rejects a comment on the
//     last line of a file without one); a carriage return outside a string or
//     comment is a lexical error, so files with CRLF line endings are refused,
//     as xl refuses them;
//   - xl's lexer reports a bad character only when it goes on to scan the
//     text after it, so a single bad character that is the last byte of the
//     input (a stray "#", ")" or "\r" with no newline after it) is silently
//     ignored; this package does the same, in configs and in disk specs;
//   - lists may nest, span lines (newlines and comments are allowed after "[",
//     around items and after ","), and may end with a trailing comma;
//   - KEY += VALUE appends to the previous value of KEY (string to string,
//     list to list); otherwise the last assignment to a key wins.
//
// Disk specs are parsed by an emulation of xl's flex scanner (longest match,
// earliest rule on ties, including its trailing-context rules), so the
// positional form ("/img,raw,xvda,rw", "phy:/dev/loop7,xvda,w"), the keyed
// form ("format=raw, vdev=xvda, target=/img") and mixtures are understood
// exactly as xl understands them.
package xlcfg
