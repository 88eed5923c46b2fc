package wafrx

import "slices"

// litScanner finds, in one pass over a string, every literal of a set
// that occurs in it (ASCII case-insensitively): an Aho-Corasick automaton
// whose matches name the rules that required the literal. It is written
// here rather than taken from a library because rule skipping needs three
// things at once: every occurrence including overlapping ones (a literal
// missed is a rule wrongly skipped), no allocation per match, and use
// from many goroutines. github.com/petar-dambovaliev/aho-corasick (which
// Coraza uses) allocates per match (6,600 allocations per benign GET in
// our measurement) and took 1.3 s to build for CRS's 5,100 literals.
type litScanner struct {
	root  [256]int32 // the root's transitions, dense; 0 is the root
	nodes []litNode
}

type litNode struct {
	next []litEdge // sorted by byte
	fail int32     // longest proper suffix that is a trie node
	dict int32     // nearest suffix (fail chain) with outputs; 0: none
	out  []int32   // rules whose literal ends exactly here
}

type litEdge struct {
	b  byte
	to int32
}

// newLitScanner builds the automaton; rules[i] are the rules literal
// lits[i] (lowercase ASCII letters) belongs to.
func newLitScanner(lits []string, rules [][]int32) *litScanner {
	s := &litScanner{nodes: make([]litNode, 1, 1024)}
	edges := map[uint64]int32{} // node<<8|byte -> child, while building
	for i, lit := range lits {
		n := int32(0)
		for j := 0; j < len(lit); j++ {
			k := uint64(n)<<8 | uint64(lit[j])
			c, ok := edges[k]
			if !ok {
				c = int32(len(s.nodes))
				s.nodes = append(s.nodes, litNode{})
				edges[k] = c
				s.nodes[n].next = append(s.nodes[n].next, litEdge{lit[j], c})
			}
			n = c
		}
		s.nodes[n].out = append(s.nodes[n].out, rules[i]...)
	}
	for i := range s.nodes {
		slices.SortFunc(s.nodes[i].next, func(a, b litEdge) int { return int(a.b) - int(b.b) })
	}
	for _, e := range s.nodes[0].next {
		s.root[e.b] = e.to
		if 'a' <= e.b && e.b <= 'z' {
			s.root[e.b-'a'+'A'] = e.to
		}
	}
	// Failure and dictionary links, breadth first.
	queue := make([]int32, 0, len(s.nodes))
	for _, e := range s.nodes[0].next {
		queue = append(queue, e.to)
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for _, e := range s.nodes[u].next {
			v := e.to
			f := s.nodes[u].fail
			for f != 0 && s.child(f, e.b) == 0 {
				f = s.nodes[f].fail
			}
			if c := s.step(f, e.b); c != v {
				s.nodes[v].fail = c
			}
			fv := s.nodes[v].fail
			if len(s.nodes[fv].out) > 0 {
				s.nodes[v].dict = fv
			} else {
				s.nodes[v].dict = s.nodes[fv].dict
			}
			queue = append(queue, v)
		}
	}
	return s
}

// child is n's transition on b (lowercase), 0 when there is none.
func (s *litScanner) child(n int32, b byte) int32 {
	next := s.nodes[n].next
	for lo, hi := 0, len(next); lo < hi; {
		m := int(uint(lo+hi) >> 1)
		switch {
		case next[m].b == b:
			return next[m].to
		case next[m].b < b:
			lo = m + 1
		default:
			hi = m
		}
	}
	return 0
}

// step is the trie transition from n on b, or from the root when n is
// the root (which stays at the root on a byte no literal starts with).
func (s *litScanner) step(n int32, b byte) int32 {
	if n == 0 {
		return s.root[b]
	}
	return s.child(n, b)
}

// scan calls found with every rule one of whose literals occurs in str,
// possibly more than once per rule.
func (s *litScanner) scan(str string, found func(rule int32)) {
	n := int32(0)
	for i := 0; i < len(str); i++ {
		b := str[i]
		if n == 0 {
			n = s.root[b]
		} else {
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			for {
				if c := s.child(n, b); c != 0 {
					n = c
					break
				}
				if n == 0 {
					break
				}
				n = s.nodes[n].fail
				if n == 0 {
					n = s.root[b]
					break
				}
			}
		}
		for o := n; o != 0; o = s.nodes[o].dict {
			for _, r := range s.nodes[o].out {
				found(r)
			}
		}
	}
}
