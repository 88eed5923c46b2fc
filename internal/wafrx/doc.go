// Package wafrx holds performance plugins for Coraza, registered through its
// plugin API. The main one is a drop-in replacement for the @rx operator
// that runs the regular expression only when a cheap, provably sound literal
// pre-filter says the input could match: most CRS patterns need some
// literal ("select", "<script", "../") that benign input never contains, and
// scanning for a handful of literals costs far less than Go's regexp
// engine. Matching and capture semantics are those of Coraza's own @rx.
package wafrx
