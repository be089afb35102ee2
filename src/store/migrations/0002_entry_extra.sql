-- Extra data stored with an entry but not hashed into the tree (a CT entry's certificate chain).
ALTER TABLE entries ADD COLUMN IF NOT EXISTS extra MEDIUMBLOB NULL;
