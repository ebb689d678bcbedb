package pages

import "errors"

// ErrConfig means New was given an unusable Config (a missing Service or
// Views), or the embedded templates do not parse.
var ErrConfig = errors.New("pages: bad configuration")
