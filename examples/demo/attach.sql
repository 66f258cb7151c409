ATTACH DATABASE '/etc/passwd' AS p;
