//go:build coraza.rule.no_regex_multiline

package wafrx

// rxFlags mirrors Coraza's @rx under the coraza.rule.no_regex_multiline tag.
const rxFlags = "(?s)"
