package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxBody bounds a request body the API decodes.
const maxBody = 1 << 20

// JSON writes v as the JSON response with status code.
func JSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ErrorBody is the JSON every failed request gets.
type ErrorBody struct {
	Error string `json:"error"`
}

// Error writes {"error": msg} with status code (4xx for the client's
// mistakes, 5xx for ours).
func Error(w http.ResponseWriter, code int, msg string) {
	JSON(w, code, ErrorBody{Error: msg})
}

// Errorf is Error with a format.
func Errorf(w http.ResponseWriter, code int, format string, args ...any) {
	Error(w, code, fmt.Sprintf(format, args...))
}

// DecodeJSON decodes the request body (at most 1 MiB, unknown fields
// refused) into v. An empty body leaves v as it is.
func DecodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}
