package keyring

import "errors"

var (
	// ErrBadMasterKey means the master key file exists but is not 32 bytes of hex.
	ErrBadMasterKey = errors.New("keyring: master key file is malformed")
	// ErrMasterKeyPermissions means others (not the owner, not its group) may write the master key file.
	ErrMasterKeyPermissions = errors.New("keyring: master key file is writable by others")
)
