package stamp

import "bytes"

// headerEnd returns the offset just after the header's last line: the
// position of the blank line that ends it (RFC 5322 §2.1), or len(b)
// when the message is all header.
func headerEnd(b []byte) int {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return 0
	}
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i + 2
	}
	if len(b) > 0 && !bytes.HasSuffix(b, []byte("\r\n")) {
		return len(b) // unterminated last line: callers append after it
	}
	return len(b)
}

// fieldStarts calls fn with the start and end of each field (its folded
// continuation lines included) of head.
func fieldStarts(head []byte, fn func(start, end int) bool) {
	for i := 0; i < len(head); {
		j := i
		for {
			k := bytes.Index(head[j:], []byte("\r\n"))
			if k < 0 {
				j = len(head)
				break
			}
			j += k + 2
			if j >= len(head) || (head[j] != ' ' && head[j] != '\t') {
				break
			}
		}
		if !fn(i, j) {
			return
		}
		i = j
	}
}

// isField reports whether the line at line starts field name (case-insensitive).
func isField(line []byte, name string) bool {
	return len(line) > len(name) && line[len(name)] == ':' && bytes.EqualFold(line[:len(name)], []byte(name))
}

func hasField(head []byte, name string) bool {
	found := false
	fieldStarts(head, func(s, e int) bool {
		found = isField(head[s:e], name)
		return !found
	})
	return found
}

// dropField returns head without any field called name (a new slice).
func dropField(head []byte, name string) []byte {
	out := make([]byte, 0, len(head))
	fieldStarts(head, func(s, e int) bool {
		if !isField(head[s:e], name) {
			out = append(out, head[s:e]...)
		}
		return true
	})
	return out
}
