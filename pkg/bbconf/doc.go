// Package bbconf parses and evaluates the BitBake assignment language used in
// Yocto local.conf files, *.inc fragments and simple recipes, so that vxn can
// read the same Xen guest descriptions (BUNDLED_XEN_GUESTS, the
// XEN_GUEST_*[guest] varflags, IMAGE_INSTALL:append:pn-..., ...) that
// meta-virtualization reads.
//
// # Why our own parser
//
// No usable Go implementation exists: BitBake itself is Python, the
// tree-sitter grammar only has a cgo binding, and the other parsers are C,
// Python or Rust. This package is a hand-written line lexer plus an evaluator
// that ports the relevant parts of BitBake's ConfHandler/BBHandler (statement
// recognition) and data_smart (operators, overrides, expansion) so that values
// come out byte-for-byte as BitBake would produce them, including its quirks:
//
//   - "A += "x"" on an unset A gives " x" (leading space); ".=" and "=." do not
//     add a space.
//   - "?=" only looks at a value set by a hard assignment; a "??=" weak default
//     does not count and is used only if nothing else sets the variable; the
//     last "??=" wins.
//   - ":=" expands immediately (with the overrides, :append and :remove active
//     at that point); "=" is expanded every time the variable is read.
//   - :append, :prepend and :remove are queued and applied when the variable
//     is read, after all parsing, so "A:append = "x"" followed by "A = "y""
//     yields "yx". :remove works on whitespace-separated words of the expanded
//     value and keeps the surrounding whitespace, exactly like BitBake.
//   - Conditional overrides (VAR:pn-foo, VAR:append:pn-foo, VAR:a:b) apply only
//     when every named override is active; among several matching VAR:x values
//     the override listed last in [Options.Overrides] wins, as with OVERRIDES.
//   - An undefined ${VAR} reference stays literal in the value; [Data.Lookup]
//     reports such references in [Value.Unresolved] so callers can report them.
//   - Values must be quoted with ' or " and nothing may follow the closing
//     quote, so a trailing "# comment" is an error (BitBake says "unparsed
//     line"); escape sequences are not interpreted.
//   - Shell and python function bodies ("do_x() {", "python do_x() {") end at
//     a line consisting of "}" in the first column, like BitBake (no brace
//     counting, so "}" inside an indented shell line is fine); "def f():"
//     bodies end at the first non-indented, non-empty, non-comment line.
//   - include of a missing file is silently ignored; require of a missing file
//     is an error.
//
// # Deliberate differences
//
//   - Python is never executed: "${@...}" is reported as an [*Error] at the
//     position of the "${@" when the value is read (or when ":=" or an
//     include path expands it), not at parse time, so unrelated variables in
//     a real local.conf (DISTRO_FEATURES with bb.utils.contains, ...) do not
//     stop parsing.
//   - The old underscore override syntax (VAR_append, VAR_remove,
//     VAR_prepend) is an error that suggests the ":append" form; BitBake since
//     Honister rejects it too.
//   - BitBake does not apply :append/:prepend/:remove or conditional overrides
//     to varflags. "VAR[flag]:append" is a syntax error in BitBake and here;
//     "VAR:append[flag]" and "VAR:pn-foo[flag]" would silently set a flag on an
//     unrelated variable in BitBake, and are errors here. Use "VAR[flag] +=",
//     ".=", "=+", "=.", "?=" or "??=" instead.
//   - Leading whitespace before a statement or comment is accepted.
//   - Expansion cycles of any length are reported as "A -> B -> A" instead of
//     a Python recursion error; expansion depth and value size are bounded.
//   - Variable names containing ${...} (e.g. "A${B} = ...") are expanded when
//     a value is read, like BitBake's expandKeys at finalisation: the expanded
//     name replaces an existing variable of that name.
//   - The active overrides come from [Options.Overrides]; an OVERRIDES
//     variable in the parsed files is stored like any other variable but does
//     not change which overrides are active.
//
// A [Data] is not safe for concurrent use while it is being modified; once
// parsing is finished, concurrent reads are safe.
package bbconf
