//go:build !coraza.rule.no_regex_multiline

package wafrx

// rxFlags mirrors Coraza's default for @rx patterns.
const rxFlags = "(?sm)"
