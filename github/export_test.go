package github

import "time"

// SetClock makes the client's runner-group cache read time from now.
func SetClock(c *Client, now func() time.Time) { c.groups.now = now }
