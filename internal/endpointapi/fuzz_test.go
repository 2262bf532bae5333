package endpointapi

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

// The server answers any bytes with one response that encodes, never
// panics, and accepts nothing that is not a known operation.
func FuzzServerRequest(f *testing.F) {
	f.Add([]byte(`{"op":"register","endpoint":{"id":"a","addrs":["10.0.0.1"]}}`))
	f.Add([]byte(`{"op":"enforced","id":"a"}`))
	f.Add([]byte(`{"op":"status"}`))
	f.Add([]byte(`{"op":"bogus","x":1}`))
	f.Add([]byte(`{`))
	s := NewServer(&Memory{}, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		resp := s.respond(context.Background(), bytes.NewReader(data))
		if _, err := json.Marshal(resp); err != nil {
			t.Fatalf("response does not encode: %v", err)
		}
		if resp.Code == codeOK {
			var req request
			if err := json.Unmarshal(data, &req); err != nil {
				// A valid first value followed by garbage is fine: the
				// server reads one value per connection.
				return
			}
			switch req.Op {
			case OpRegister, OpUnregister, OpEnforced, OpStatus:
			default:
				t.Fatalf("unknown op %q accepted", req.Op)
			}
		}
	})
}
